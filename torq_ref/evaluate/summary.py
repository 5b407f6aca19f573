"""Summary statistics of a run's rows and the metrics table (spec/EV.md section 3).

A row is one (method, setting) of the engine: {"method", "setting", "ppl", "window_nll",
"window_kld", "window_top1", "window_n", ...}, the lists holding one value per evaluation window
(the window means of spec/EV.md section 1 and the window's number of scored positions).
:func:`summarize` adds the means over tokens with their standard errors (EV-3.1) and, for every
method other than fp32 and the baseline, the paired differences against the baseline row of the
same setting (EV-3.2, EV-3.3); :func:`metrics_table` renders them (EV-3.4).
"""
from __future__ import annotations

import copy

from .intervals import IntervalError, paired_ci, weighted_mean, window_se, windows_to_separate

#: methods that get no comparison against the baseline
UNCOMPARED = ("fp32",)


def _num(v: float):
    """A float, or None where it is undefined (nan: one window), so that results.json stays
    strict JSON (EV-3.1)."""
    return None if v != v else float(v)


def _weights(row: dict):
    n = row.get("window_n")
    return None if n is None else [float(v) for v in n]


def _where(row: dict) -> str:
    return f"row ({row.get('method')!r}, {row.get('setting')!r})"


def summarize(results_rows, baseline: str = "hadamard32", seed: int = 0, *, level: float = 0.95,
              method: str = "t") -> list[dict]:
    """Copies of ``results_rows`` with "kld", "kld_se", "top1", "top1_se", "nll", "nll_se" added,
    and "vs_<baseline>" for rows other than fp32 / the baseline whose setting has a baseline row
    (EV-3.1, EV-3.2). ``method`` / ``seed``: the paired interval of EV-2.3."""
    rows = [copy.deepcopy(r) for r in results_rows]
    base = {}
    for r in rows:
        for key in ("method", "setting", "window_nll"):
            if key not in r:
                raise IntervalError(f"{_where(r)} has no {key!r}")
        if r["method"] == baseline:
            if r["setting"] in base:
                raise IntervalError(f"two baseline rows for setting {r['setting']!r}")
            base[r["setting"]] = r
    for r in rows:
        w = _weights(r)
        try:
            r["nll"] = weighted_mean(r["window_nll"], w)
            r["nll_se"] = _num(window_se(r["window_nll"], w))
            for key in ("kld", "top1"):
                if f"window_{key}" in r:
                    r[key] = weighted_mean(r[f"window_{key}"], w)
                    r[f"{key}_se"] = _num(window_se(r[f"window_{key}"], w))
        except IntervalError as err:
            raise IntervalError(f"{_where(r)}: {err}") from None
    for r in rows:
        b = base.get(r["setting"])
        if r["method"] in UNCOMPARED or r["method"] == baseline or b is None:
            continue
        if r.get("window_n") != b.get("window_n") or len(r["window_nll"]) != len(b["window_nll"]):
            raise IntervalError(f"{_where(r)} and its baseline {baseline!r} were not scored on the "
                                f"same windows (window_n differ)")
        w = _weights(r)
        cmp = {"windows": len(r["window_nll"]), "level": level, "ci_method": method}
        for key, col in (("dnll", "window_nll"), ("dkld", "window_kld")):
            if col not in r or col not in b:
                continue
            d, lo, hi = paired_ci(r[col], b[col], w, level=level, method=method, seed=seed)
            cmp[key], cmp[f"{key}_ci"] = d, [_num(lo), _num(hi)]
            cmp[f"{key}_tie"] = bool(lo <= 0 <= hi) if lo == lo else True     # no interval: a tie
            diff = [x - y for x, y in zip(r[col], b[col])]
            cmp[f"{key}_windows_needed"] = windows_to_separate(diff, w, level=level)
        r[f"vs_{baseline}"] = cmp
    return rows


def _diff_cell(cmp: dict | None, key: str, digits: int) -> str:
    if not cmp or key not in cmp:
        return "-"
    lo, hi = cmp[f"{key}_ci"]
    ci = "" if lo is None or lo != lo else f" [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return f"{cmp[key]:+.{digits}f}{ci}" + (" tie" if cmp[f"{key}_tie"] else "")


def metrics_table(rows, baseline: str = "hadamard32") -> str:
    """Markdown: method, setting, PPL, KLD +- se, top-1, dKLD and dNLL vs the baseline with their
    intervals, "tie" where the interval contains 0 (EV-3.4). ``rows``: output of summarize."""
    order = {"FP32": 0, "W16A4": 1, "W4A4": 2}
    rows = sorted(rows, key=lambda r: order.get(r["setting"], 3))      # stable: method order kept
    head = ["method", "setting", "PPL", "KLD (nats) +- se", "top-1 %",
            f"dKLD vs {baseline} [95% CI]", f"dNLL vs {baseline} [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cmp = r.get(f"vs_{baseline}")
        kld = "-" if "kld" not in r else (
            f"{r['kld']:.4f}" + ("" if r["kld_se"] is None or r["kld_se"] != r["kld_se"]
                                 else f" +- {r['kld_se']:.4f}"))
        top1 = "-" if "top1" not in r else f"{100 * r['top1']:.1f}"
        cells = [r["method"], r["setting"], f"{r['ppl']:.2f}", kld, top1,
                 _diff_cell(cmp, "dkld", 4), _diff_cell(cmp, "dnll", 4)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
