"""What a run records besides its table: the provenance of results.json (spec/EV.md section 6),
the per-token KLD percentiles and the llama.cpp-style summary block (section 7).

One real ``run`` on a tiny GGUF-imported model (2-layer llama, byte-level BPE tokenizer) serves
the end-to-end checks; the rest runs on synthetic rows."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

import torq_ref
from torq_ref.evaluate import provenance as prov
from torq_ref.evaluate.intervals import weighted_mean, window_se
from torq_ref.evaluate.kld_summary import (PERCENTILES, kld_percentiles, percentile, summary_block,
                                           summary_blocks)
from torq_ref.evaluate.summary import summarize

REPO = Path(torq_ref.__file__).resolve().parent.parent

# -- a parser of llama.cpp's `perplexity --kl-divergence` output, written from its printf formats
NUM = r"(-?(?:\d+\.\d+|nan|inf))"
LLAMA_LINES = {
    "ppl": rf"^Mean PPL\(Q\)\s+: +{NUM} ± +{NUM}$",
    "ppl_base": rf"^Mean PPL\(base\)\s+: +{NUM} ± +{NUM}$",
    "cor": rf"^Cor\(ln\(PPL\(Q\)\), ln\(PPL\(base\)\)\): +{NUM}%$",
    "ln_ratio": rf"^Mean ln\(PPL\(Q\)/PPL\(base\)\)\s+: +{NUM} ± +{NUM}$",
    "ratio": rf"^Mean PPL\(Q\)/PPL\(base\)\s+: +{NUM} ± +{NUM}$",
    "diff": rf"^Mean PPL\(Q\)-PPL\(base\)\s+: +{NUM} ± +{NUM}$",
    "kld": rf"^Mean    KLD: +{NUM} ± +{NUM}$",
    "max": rf"^Maximum KLD: +{NUM}$",
    "p99.9": rf"^99\.9%   KLD: +{NUM}$",
    "p99": rf"^99\.0%   KLD: +{NUM}$",
    "p95": rf"^95\.0%   KLD: +{NUM}$",
    "p90": rf"^90\.0%   KLD: +{NUM}$",
    "median": rf"^Median  KLD: +{NUM}$",
    "p10": rf"^10\.0%   KLD: +{NUM}$",
    "p5": rf"^ 5\.0%   KLD: +{NUM}$",
    "p1": rf"^ 1\.0%   KLD: +{NUM}$",
    "p0.1": rf"^ 0\.1%   KLD: +{NUM}$",
    "min": rf"^Minimum KLD: +{NUM}$",
    "top": rf"^Same top p: +{NUM} ± +{NUM} %$",
}


def parse_llama(block: str) -> dict:
    out = {}
    for key, pat in LLAMA_LINES.items():
        m = re.search(pat, block, re.M)
        if m:
            out[key] = tuple(float(g) for g in m.groups())
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``run`` on a tiny imported model: (stdout, results.json dict, argv)."""
    pytest.importorskip("gguf")
    from test_model_gguf import write_tiny_gguf

    from torq_ref.cli import main
    from torq_ref.model.registry import ensure_model

    d = tmp_path_factory.mktemp("run")
    write_tiny_gguf(d / "t.gguf")
    model = ensure_model(str(d / "m"), gguf=d / "t.gguf", progress=False)
    argv = ["torq_ref", "run", "--model", str(model), "--methods", "fp32,rtn,hadamard32",
            "--settings", "W16A4", "--eval-windows", "2", "--calib-windows", "3",
            "--out", str(d / "out"), "--no-figures"]
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", argv)
    import contextlib
    import io

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            assert main(argv[1:]) == 0
    finally:
        mp.undo()
    return buf.getvalue(), json.loads((d / "out" / "results.json").read_text()), argv


# ---------------------------------------------------------------- section 6: provenance

@pytest.mark.clause("EV-6.1")
def test_results_json_carries_provenance(tiny_run):
    _, res, argv = tiny_run
    p = res["provenance"]
    assert list(p) == sorted(prov.FIELDS) and set(p) == set(prov.FIELDS)     # json keys are sorted
    assert p["version"] == torq_ref.__version__
    assert p["argv"] == argv
    when = datetime.strptime(p["utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(datetime.now(timezone.utc) - when) < timedelta(hours=1)
    assert p["cpu"] == prov.cpu_model() and p["cpu"]
    try:
        want = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        want = None
    inside = want is not None and Path(subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    ).stdout.strip()).resolve() == REPO
    assert p["git"] == (want if inside else None)
    assert "provenance" not in res["settings"]


def _git(cwd, *args):
    import os

    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, env=env)


@pytest.mark.clause("EV-6.1")
def test_git_describe_only_for_the_checkout_that_holds_the_package(tmp_path):
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    pkg = tmp_path / "repo" / "torq_ref"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert prov.git_describe(pkg) is None                                # no checkout at all
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", "-A")
    _git(tmp_path / "repo", "commit", "-q", "-m", "x")
    head = subprocess.run(["git", "-C", str(tmp_path / "repo"), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    got = prov.git_describe(pkg)
    assert got is not None and head.startswith(got[:7]) and not got.endswith("-dirty")
    (pkg / "__init__.py").write_text("x = 1\n")
    assert prov.git_describe(pkg).endswith("-dirty")
    # a package installed below some other work tree (a venv inside a repository) is no checkout
    nested = tmp_path / "repo" / "venv" / "site" / "torq_ref"
    nested.mkdir(parents=True)
    assert prov.git_describe(nested) is None


@pytest.mark.clause("EV-6.1")
def test_cpu_model_from_cpuinfo_or_platform(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Some CPU @ 2.00GHz\n")
    assert prov.cpu_model(f) == "Some CPU @ 2.00GHz"
    f.write_text("processor\t: 0\nProcessor\t: AArch64 Processor rev 4 (aarch64)\n")
    assert prov.cpu_model(f) == "AArch64 Processor rev 4 (aarch64)"
    assert prov.cpu_model(tmp_path / "missing")                         # the platform's name


def _synthetic(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = []
    for m, s, k in (("fp32", "FP32", 0.0), ("hadamard32", "W16A4", 0.2), ("torq", "W16A4", 0.1)):
        kld = (k + 0.01 * rng.random(4)) if k else np.zeros(4)
        rows.append({"method": m, "setting": s, "ppl": 10.0, "window_nll": (2.3 + kld).tolist(),
                     "window_kld": kld.tolist(), "window_top1": (1 - kld).tolist(), "window_n": [511] * 4})
    return {"results": rows, "seed": seed, "per_site": {},
            "settings": {"model": "tiny", "seed": seed, "eval_windows": 4, "scale_rule": "floor"}}


@pytest.mark.clause("EV-6.2")
def test_readers_ignore_provenance(tmp_path, monkeypatch):
    """Two runs that differ only in seed and in provenance (other argv, other time, other git)
    form a seed study and a report; provenance is never a setting."""
    from torq_ref.evaluate.cross_model import load_results
    from torq_ref.evaluate.seed_spread import load_seed_runs
    from torq_ref.torq.report import write_json

    paths = []
    for seed in (0, 1):
        monkeypatch.setattr(sys, "argv", ["torq_ref", "run", "--seed", str(seed)])
        monkeypatch.setattr(prov, "git_describe", lambda *a, s=seed: f"abc{s}")
        monkeypatch.setattr(prov, "utc_now", lambda s=seed: f"2026-01-0{s + 1}T00:00:00Z")
        paths.append(write_json(_synthetic(seed), tmp_path / f"s{seed}"))
    docs = [json.loads(p.read_text()) for p in paths]
    assert docs[0]["provenance"] != docs[1]["provenance"]
    assert docs[0]["provenance"]["argv"] == ["torq_ref", "run", "--seed", "0"]
    runs = load_seed_runs(paths)
    assert [r["seed"] for r in runs] == [0, 1] and all("provenance" not in r["settings"] for r in runs)
    assert set(load_results(["a", "b"], paths)) == {"a", "b"}


# ---------------------------------------------------------------- section 7: KLD percentiles, summary

@pytest.mark.clause("EV-7.1")
def test_percentiles_follow_llama_cpp_rule():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 1001):
        v = rng.exponential(size=n)
        got = kld_percentiles(v)
        s = np.sort(v)
        assert got["n"] == n and got["max"] == s[-1] and got["min"] == s[0]
        assert got["median"] == pytest.approx(np.median(v), rel=0, abs=0)
        for key, _, frac in PERCENTILES:
            if frac is not None:
                p = frac * (n - 1)
                i = int(np.floor(p))
                want = (1 - (p - i)) * s[i] + (p - i) * s[min(i + 1, n - 1)]
                assert got[key] == pytest.approx(want, rel=1e-15, abs=0), (n, key)
                assert got[key] == pytest.approx(np.quantile(v, frac, method="linear"), rel=1e-12)
    assert percentile(np.array([0.0, 10.0]), 0.25) == 2.5
    assert percentile(np.array([0.0, 10.0, 20.0]), 0.999) == pytest.approx(19.98)
    with pytest.raises(ValueError, match="at least one"):
        kld_percentiles([])
    with pytest.raises(ValueError, match="non-finite"):
        kld_percentiles([0.1, float("nan")])


@pytest.mark.clause("EV-7.1")
def test_engine_rows_carry_the_percentiles_of_every_scored_token():
    """The engine's kld_percentiles equal those of the per-token KLDs of whole-model passes."""
    from torq_ref.evaluate.token_metrics import window_metrics
    from torq_ref.model.tiny import tiny_model
    from torq_ref.torq import engine
    from torq_ref.torq.oracle import plan_for
    from torq_ref.torq.site_metrics import site_metrics
    from torq_fixtures import CFG, W

    tiny = tiny_model("llama", seed=3)
    rng = np.random.default_rng(11)
    ids = rng.integers(0, 96, size=5 * W)
    ev, ca = ids[: 3 * W].reshape(3, W), ids[3 * W:].reshape(2, W)
    rows, _, _ = engine.stream_evaluate(tiny, ev, ca, ("fp32", "rtn"), ("W4A4",), CFG,
                                        progress=False, site_metrics=site_metrics)
    rtn = rows[1]
    plan = plan_for("rtn", "W4A4", {}, CFG)
    tokens = [window_metrics(tiny.forward(ev[j])[0], tiny.forward(ev[j], quant=plan)[0], ev[j, 1:],
                             per_position=True)["kld_pos"] for j in range(len(ev))]
    want = kld_percentiles(np.concatenate(tokens))
    assert rtn["kld_percentiles"]["n"] == sum(rtn["window_n"]) == 3 * (W - 1)
    for key, _, _ in PERCENTILES:
        assert rtn["kld_percentiles"][key] == pytest.approx(want[key], rel=1e-6, abs=1e-12), key
    assert rows[0]["kld_percentiles"]["max"] == pytest.approx(0.0, abs=1e-12)


def _summarized():
    rng = np.random.default_rng(4)
    hard = rng.standard_normal(6)
    rows = []
    for m, s, k in (("fp32", "FP32", 0.0), ("hadamard32", "W16A4", 0.3), ("torq", "W16A4", 0.2)):
        nll = 2.5 + 0.2 * hard + k + (0 if k == 0 else 0.01 * rng.standard_normal(6))
        kld = np.zeros(6) if k == 0 else k + 0.01 * rng.standard_normal(6)
        r = {"method": m, "setting": s, "ppl": float(np.exp(nll.mean())), "window_nll": nll.tolist(),
             "window_kld": kld.tolist(), "window_top1": (0.9 - kld).tolist(), "window_n": [511] * 6}
        if k:
            r["kld_percentiles"] = kld_percentiles(rng.exponential(k, size=6 * 511))
        rows.append(r)
    return summarize(rows)


@pytest.mark.clause("EV-7.2")
def test_summary_block_reads_as_llama_cpp_output():
    rows = _summarized()
    base, row = rows[0], rows[2]
    block = summary_block(row, base)
    got = parse_llama(block)
    assert set(got) == set(LLAMA_LINES)
    assert got["ppl"][0] == pytest.approx(math.exp(row["nll"]), abs=1e-6)
    assert got["ppl"][1] == pytest.approx(math.exp(row["nll"]) * row["nll_se"], abs=1e-6)
    assert got["ppl_base"][0] == pytest.approx(math.exp(base["nll"]), abs=1e-6)
    d = [a - b for a, b in zip(row["window_nll"], base["window_nll"])]
    assert got["ln_ratio"] == pytest.approx((weighted_mean(d, row["window_n"]), window_se(d, row["window_n"])),
                                            abs=1e-6)
    assert got["ratio"][0] == pytest.approx(math.exp(got["ln_ratio"][0]), abs=1e-5)
    assert got["diff"][0] == pytest.approx(math.exp(row["nll"]) - math.exp(base["nll"]), abs=1e-6)
    # the correlation of the two log-perplexities, from se(d)^2 = se_q^2 + se_b^2 - 2 cov
    cov = np.cov(row["window_nll"], base["window_nll"])[0, 1] / 6
    assert got["cor"][0] == pytest.approx(100 * cov / (row["nll_se"] * base["nll_se"]), abs=0.01)
    assert got["kld"] == pytest.approx((row["kld"], row["kld_se"]), abs=1e-6)
    for key, _, _ in PERCENTILES:
        assert got[key][0] == pytest.approx(row["kld_percentiles"][key], abs=1e-6), key
    assert got["top"] == pytest.approx((100 * row["top1"], 100 * row["top1_se"]), abs=1e-3)
    # llama.cpp's exact label columns and number widths
    lines = block.splitlines()
    assert lines[0] == "====== Perplexity statistics ======"
    assert "====== KL divergence statistics ======" in lines
    assert "====== Token probability statistics ======" in lines
    assert re.fullmatch(r"Mean PPL\(Q\) {19}: [ \d.]{10} ± [ \d.]{10}", lines[1])
    assert re.fullmatch(r"Mean    KLD: [ \d.]{10} ± [ \d.]{10}",
                        next(x for x in lines if x.startswith("Mean    KLD")))
    # no base row: the PPL(base) lines are left out, the rest stays
    solo = parse_llama(summary_block(row))
    assert "ppl_base" not in solo and "ln_ratio" not in solo and "kld" in solo and "top" in solo


@pytest.mark.clause("EV-7.3")
def test_summary_blocks_title_every_row_but_the_base():
    rows = _summarized()
    text = summary_blocks(rows)
    titles = [x for x in text.splitlines() if x.startswith("### ")]
    assert titles == ["### hadamard32 W16A4: llama.cpp-style summary (base: fp32)",
                      "### torq W16A4: llama.cpp-style summary (base: fp32)"]
    assert text.count("Mean    KLD:") == 2
    assert "none in this run" in summary_blocks(rows[1:])


@pytest.mark.clause("EV-7.1", "EV-7.3")
def test_run_prints_the_blocks_and_stores_the_percentiles(tiny_run):
    out, res, _ = tiny_run
    rows = {(r["method"], r["setting"]): r for r in res["results"]}
    for key in (("rtn", "W16A4"), ("hadamard32", "W16A4")):
        r = rows[key]
        pct = r["kld_percentiles"]
        assert pct["n"] == sum(r["window_n"]) and pct["min"] <= pct["median"] <= pct["p99"] <= pct["max"]
        head = f"### {key[0]} {key[1]}: llama.cpp-style summary (base: fp32)"
        assert head in out
        block = out.split(head, 1)[1].split("### ", 1)[0]
        got = parse_llama(block)
        assert got["kld"][0] == pytest.approx(r["kld"], abs=1e-6)
        assert got["p99"][0] == pytest.approx(pct["p99"], abs=1e-6)
        assert got["top"][0] == pytest.approx(100 * r["top1"], abs=1e-3)
    assert "### fp32" not in out
