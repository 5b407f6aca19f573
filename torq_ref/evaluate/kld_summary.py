"""Per-token KLD percentiles of a row and the llama.cpp-style summary block (spec/EV.md section 7).

``kld_percentiles(kld_tokens)`` reduces the per-token KL divergences of one row (every scored
position of every evaluation window, EV-1.3) to the order statistics llama.cpp's
``perplexity --kl-divergence`` prints (EV-7.1); the engine stores them in each row of
results.json as ``kld_percentiles``. ``summary_block(row, base)`` renders one summarized row
(spec/EV.md section 3) with llama.cpp's fixed labels and number formats
(tools/perplexity/perplexity.cpp, function ``kl_divergence``), so that a parser of llama.cpp's
output reads it (EV-7.2); ``summary_blocks(rows)`` does so for every row but fp32 (EV-7.3).

The uncertainties are this project's: standard errors over windows (EV-2.2), not llama.cpp's
per-token formula sqrt(var / (N - 1)), which treats correlated tokens as independent.
"""
from __future__ import annotations

import math

import numpy as np

from .intervals import weighted_mean, window_se

#: (key in results.json, label in the printed block, fraction) in llama.cpp's print order;
#: fraction None: the median (the mean of the two middle values for an even count)
PERCENTILES = (
    ("max", "Maximum KLD", 1.0),
    ("p99.9", "99.9%   KLD", 0.999),
    ("p99", "99.0%   KLD", 0.990),
    ("p95", "95.0%   KLD", 0.950),
    ("p90", "90.0%   KLD", 0.900),
    ("median", "Median  KLD", None),
    ("p10", "10.0%   KLD", 0.100),
    ("p5", " 5.0%   KLD", 0.050),
    ("p1", " 1.0%   KLD", 0.010),
    ("p0.1", " 0.1%   KLD", 0.001),
    ("min", "Minimum KLD", 0.0),
)


def percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile of ascending values: with p = fraction (N - 1), i = floor(p),
    (1 - (p - i)) v[i] + (p - i) v[min(i + 1, N - 1)]; the ends for fraction <= 0 or >= 1."""
    v = sorted_values
    if fraction <= 0:
        return float(v[0])
    if fraction >= 1:
        return float(v[-1])
    p = fraction * (len(v) - 1)
    i = int(math.floor(p))
    p -= i
    return float((1 - p) * v[i] + p * v[min(i + 1, len(v) - 1)])


def kld_percentiles(kld_tokens) -> dict:
    """{"n", "max", "p99.9", ..., "median", ..., "min"} of the per-token KLDs of one row (EV-7.1).
    ValueError for no values or a non-finite one."""
    v = np.sort(np.asarray(kld_tokens, dtype=np.float64).ravel())
    if v.size == 0:
        raise ValueError("kld_percentiles needs at least one per-token KLD")
    if not np.isfinite(v).all():
        raise ValueError("per-token KLDs contain non-finite values")
    out = {"n": int(v.size)}
    for key, _, frac in PERCENTILES:
        if frac is None:
            h = v.size // 2
            out[key] = float(v[h]) if v.size % 2 else float(0.5 * (v[h - 1] + v[h]))
        else:
            out[key] = percentile(v, frac)
    return out


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


def _paired(row: dict, base: dict) -> tuple[float, float, float]:
    """(mean, se, covariance) of ln PPL(Q) - ln PPL(base) from the window NLLs (EV-2.1, 2.2):
    the covariance term follows from se(d)^2 = se_q^2 + se_b^2 - 2 cov."""
    w = row.get("window_n")
    w = None if w is None else [float(x) for x in w]
    d = [a - b for a, b in zip(row["window_nll"], base["window_nll"])]
    mean = weighted_mean(d, w)
    se_d, se_q, se_b = (window_se(x, w) for x in (d, row["window_nll"], base["window_nll"]))
    return mean, se_d, 0.5 * (se_q ** 2 + se_b ** 2 - se_d ** 2)


def summary_block(row: dict, base: dict | None = None) -> str:
    """llama.cpp's "Perplexity statistics", "KL divergence statistics" and "Same top p" lines of
    one summarized row (EV-7.2); ``base``: the fp32 row scored on the same windows (without it
    the lines about PPL(base) are left out). Lines without an input (no kld_percentiles, no
    top1) are left out too."""
    nll, nll_se = row["nll"], _nan(row.get("nll_se"))
    ppl = math.exp(nll)
    lines = ["====== Perplexity statistics ======",
             f"Mean PPL(Q)                   : {ppl:10.6f} ± {ppl * nll_se:10.6f}"]
    if base is not None:
        if len(base["window_nll"]) != len(row["window_nll"]):
            raise ValueError("the base row was scored on other windows")
        b_se = _nan(base.get("nll_se"))
        ppl_b = math.exp(base["nll"])
        d, d_se, cov = _paired(row, base)
        cor = cov / (nll_se * b_se) if nll_se * b_se > 0 else float("nan")
        ratio = math.exp(d)
        diff_se = math.sqrt(max(0.0, (ppl * nll_se) ** 2 + (ppl_b * b_se) ** 2 - 2 * ppl * ppl_b * cov)) \
            if nll_se == nll_se and b_se == b_se else float("nan")
        lines += [f"Mean PPL(base)                : {ppl_b:10.6f} ± {ppl_b * b_se:10.6f}",
                  f"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * cor:6.2f}%",
                  f"Mean ln(PPL(Q)/PPL(base))     : {d:10.6f} ± {d_se:10.6f}",
                  f"Mean PPL(Q)/PPL(base)         : {ratio:10.6f} ± {ratio * d_se:10.6f}",
                  f"Mean PPL(Q)-PPL(base)         : {ppl - ppl_b:10.6f} ± {diff_se:10.6f}"]
    if "kld" in row:
        lines += ["", "====== KL divergence statistics ======",
                  f"Mean    KLD: {row['kld']:10.6f} ± {_nan(row.get('kld_se')):10.6f}"]
        pct = row.get("kld_percentiles")
        if pct:
            lines += [f"{label}: {pct[key]:10.6f}" for key, label, _ in PERCENTILES]
    if "top1" in row:
        top1, se = row["top1"], _nan(row.get("top1_se"))
        lines += ["", "====== Token probability statistics ======",
                  f"Same top p: {100 * top1:6.3f} ± {100 * se:5.3f} %"]
    return "\n".join(lines)


def summary_blocks(rows, base_method: str = "fp32") -> str:
    """One titled :func:`summary_block` per summarized row other than ``base_method``, in row
    order, each against the base row when the run has one (EV-7.3)."""
    base = next((r for r in rows if r["method"] == base_method), None)
    out = []
    for r in rows:
        if r["method"] == base_method:
            continue
        out.append(f"### {r['method']} {r['setting']}: llama.cpp-style summary"
                   f" (base: {base_method if base is not None else 'none in this run'})\n\n"
                   + summary_block(r, base))
    return "\n\n".join(out)
