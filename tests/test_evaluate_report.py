"""The cross-model report on synthetic results.json files (spec/EV.md section 4)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from torq_ref.cli import main
from torq_ref.evaluate.cross_model import ReportError, cross_model_table, load_results, write_report

W = 6


def _rows(seed, methods=("fp32", "hadamard32", "torq", "smoothrot")):
    rng = np.random.default_rng(seed)
    hard = rng.standard_normal(W)
    rows = []
    level = {"fp32": 0.0, "hadamard32": 0.2, "torq": 0.1, "smoothrot": 0.2}
    for m in methods:
        for s in (("FP32",) if m == "fp32" else ("W16A4", "W4A4")):
            k = level[m] * (3 if s == "W4A4" else 1)
            nll = 2.5 + 0.2 * hard + k + (0 if m == "fp32" else 0.002 * rng.standard_normal(W))
            kld = k + (np.zeros(W) if m == "fp32" else 0.002 * rng.standard_normal(W))
            rows.append({"method": m, "setting": s, "ppl": float(np.exp(nll.mean())),
                         "window_nll": nll.tolist(), "window_kld": np.abs(kld).tolist(),
                         "window_top1": (1 - kld).clip(0, 1).tolist(), "window_n": [511] * W})
    return rows


def _write(tmp_path, name, rows):
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"results": rows, "seed": 0}))
    return d / "results.json"


@pytest.mark.clause("EV-4.1")
def test_load_results_from_root_or_paths(tmp_path):
    p1 = _write(tmp_path, "a", _rows(1))
    p2 = _write(tmp_path, "b", _rows(2))
    got = load_results(["a", "b"], root=tmp_path)
    assert list(got) == ["a", "b"] and "kld" in got["a"][1] and "vs_hadamard32" in got["a"][3]
    assert load_results(["x", "y"], paths=[p1, p2])["y"] == got["b"]
    with pytest.raises(ReportError, match="model 'c'.*no results file"):
        load_results(["a", "c"], root=tmp_path)
    with pytest.raises(ReportError, match="one per model"):
        load_results(["a", "b"], paths=[p1])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    with pytest.raises(ReportError, match="not JSON"):
        load_results(["bad"], root=tmp_path)
    (tmp_path / "bad" / "results.json").write_text(json.dumps({"results": []}))
    with pytest.raises(ReportError, match="no 'results'"):
        load_results(["bad"], root=tmp_path)


@pytest.mark.clause("EV-4.2")
def test_table_has_a_column_group_per_model_and_marks_ties(tmp_path):
    _write(tmp_path, "a", _rows(1))
    _write(tmp_path, "b", _rows(2, methods=("fp32", "hadamard32", "torq")))
    text = cross_model_table(load_results(["a", "b"], root=tmp_path))
    lines = text.splitlines()
    assert lines[0] == ("| method | setting | a PPL | a KLD +- se | a top-1 % | b PPL | b KLD +- se | "
                        "b top-1 % |")
    keys = [tuple(c.strip() for c in line.strip("|").split("|")[:2]) for line in lines[2:]]
    assert keys == [("fp32", "FP32"), ("hadamard32", "W16A4"), ("torq", "W16A4"), ("smoothrot", "W16A4"),
                    ("hadamard32", "W4A4"), ("torq", "W4A4"), ("smoothrot", "W4A4")]
    smooth = next(line for line in lines if line.startswith("| smoothrot | W16A4"))
    cells = [c.strip() for c in smooth.strip("|").split("|")]
    assert cells[3].endswith(" tie") and cells[5:] == ["-", "-", "-"]       # b has no smoothrot
    torq = next(line for line in lines if line.startswith("| torq | W4A4"))
    assert " tie" not in torq and "+-" in torq


@pytest.mark.clause("EV-4.3", "EV-4.4")
def test_report_command_writes_table_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _write(tmp_path, "a", _rows(1))
    _write(tmp_path, "b", _rows(2))
    out = tmp_path / "rep"
    assert main(["report", "--models", "a,b", "--root", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| method | setting | a PPL" in printed
    table = (out / "report.md").read_text().split("## torq against the best peer")[0]
    assert table.count("| torq |") == 2
    assert (out / "kld.png").stat().st_size > 1000
    paths = write_report(load_results(["a"], root=tmp_path), tmp_path / "r2", figure=False)
    assert [p.name for p in paths] == ["report.md"]
    assert main(["report", "--models", "a,zz", "--root", str(tmp_path), "--out", str(out)]) == 2
    assert "no results file" in capsys.readouterr().err


@pytest.mark.clause("EV-4.4")
def test_run_with_several_models_ends_with_the_cross_model_report(tmp_path, monkeypatch, capsys):
    """``run --model a,b`` writes out/<model>/results.json per model, then out/report/ (the
    runs themselves are replaced by synthetic results here)."""
    from torq_ref.evaluate.summary import summarize
    from torq_ref.torq import pipeline

    def fake_run(spec, cfg, dispatch=None, **run_kw):
        rows = [dict(r, imbalance=1.0, entropy=3.5) for r in summarize(_rows(len(spec.model)))]
        return {"results": rows, "per_site": {}, "settings": {}, "timings": {"total_s": 1.0}, "seed": 0}

    monkeypatch.setattr(pipeline, "run", fake_run)
    assert main(["run", "--model", "aa,bbb", "--methods", "fp32,hadamard32,torq,smoothrot",
                 "--out", str(tmp_path), "--no-figures"]) == 0
    assert (tmp_path / "aa" / "results.json").is_file() and (tmp_path / "bbb" / "results.json").is_file()
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| aa PPL |" in text and "| bbb PPL |" in text
    assert "## all models" in capsys.readouterr().out


@pytest.mark.clause("EV-4.5")
def test_head_to_head_picks_the_best_peer_and_pairs_the_windows(tmp_path):
    from torq_ref.evaluate.cross_model import head_to_head, head_to_head_table

    res = load_results(["a"], [_write(tmp_path, "a", _rows(1))])
    rows = head_to_head(res)
    assert [(h["model"], h["setting"]) for h in rows] == [("a", "W16A4"), ("a", "W4A4")]
    by = {(r["method"], r["setting"]): r for r in res["a"]}
    for h in rows:
        t, peers = by[("torq", h["setting"])], [by[(p, h["setting"])] for p in ("hadamard32", "smoothrot")]
        best = min(peers, key=lambda r: r["kld"])
        assert h["best_peer"] == best["method"] and h["peer_kld"] == best["kld"]
        assert h["kld_ratio"] == pytest.approx(t["kld"] / best["kld"])
        assert h["ppl_ratio"] == pytest.approx(t["ppl"] / by[("fp32", "FP32")]["ppl"])
        d = np.array(t["window_kld"]) - np.array(best["window_kld"])
        assert h["dkld"] == pytest.approx(d.mean())
        # paired: the interval is that of the window differences, far narrower than the KLDs' spread
        lo, hi = h["dkld_ci"]
        assert lo < h["dkld"] < hi and hi - lo < 0.05 and not h["tie"]
    assert "| a | W16A4 | torq |" in head_to_head_table(rows)
    # no peer, or no such method: no line
    solo = {"a": [r for r in res["a"] if r["method"] in ("fp32", "torq")]}
    assert head_to_head(solo) == [] and head_to_head(res, method="duquant") == []
    # the report carries the section
    write_report(res, tmp_path / "rep", figure=False)
    assert "torq against the best peer" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.clause("EV-4.6")
def test_imbalance_table_from_per_site_metrics(tmp_path):
    from torq_ref.evaluate.cross_model import imbalance_table, load_per_site, site_imbalance

    per_site = {"rtn": {"0:down": {"imbalance": 3.0}, "1:down": {"imbalance": 9.0},
                        "2:down": {"imbalance": 4.0}, "0:o": {"imbalance": 1.5}},
                "torq": {"0:down": {"imbalance": 1.0}}}
    v = site_imbalance(per_site)
    assert v["down"] == {"median": 4.0, "max": 9.0, "layer": 1} and v["o"]["max"] == 1.5
    assert site_imbalance(per_site, "torq")["down"]["median"] == 1.0
    t = imbalance_table({"m": per_site})
    assert "| m | down | 4.00 | 9.00 | 1 |" in t
    assert imbalance_table({"m": {}}) == ""
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"results": _rows(1), "per_site": per_site}))
    got = load_per_site(["m"], [p])
    assert got["m"] == per_site
    write_report(load_results(["m"], [p]), tmp_path / "rep", figure=False, per_site=got)
    assert "| m | down | 4.00 | 9.00 | 1 |" in (tmp_path / "rep" / "report.md").read_text()
