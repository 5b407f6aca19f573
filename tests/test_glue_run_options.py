"""The glue of ``run``: every option of the parser reaches the code that uses it, results.json
records every settings key, and the seed-spread reader refuses runs that differ in any of them
(spec/TQ.md TQ-4.1, TQ-4.3, spec/EV.md EV-5.1, spec/ST.md ST-4.1).

The runs are the real command (``torq_ref.cli.main``) on a tiny seeded model: only the model
registry, the tokenizer and the loader are replaced, so the parser, ``settings_from_args``, the
pipeline, the engine and ``write_json`` are the ones a user runs. Each option is run with and
without it: the settings it names must change in results.json and the rows must change where the
option must change them. The option table is checked against the parser itself, so a new option
without an entry fails."""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest

from torq_ref.model.tiny import tiny_model

W = 64           # tokens per window of the tiny runs


class FakeModels:
    """Stands in for the registry, tokenizer and loader; records what the pipeline asks for."""

    def __init__(self, monkeypatch, family="llama", bos=None, n_tokens=8 * W):
        import torq_ref.model as M
        import torq_ref.model.data as data
        import torq_ref.model.registry as registry
        from torq_ref.torq import pipeline, report

        self.family, self.bos, self.n_tokens = family, bos, n_tokens
        self.ensured, self.loaded, self.figures = [], [], []
        monkeypatch.setattr(pipeline, "RunSpec", functools.partial(pipeline.RunSpec, window=W, progress=False))
        monkeypatch.setattr(registry, "ensure_model", self.ensure_model)
        monkeypatch.setattr(M, "tokenize_text", self.tokenize_text)
        monkeypatch.setattr(data, "bos_token_id", lambda d: self.bos)
        monkeypatch.setattr(M, "load", self.load)
        monkeypatch.setattr(report, "write_figures", self.write_figures)

    def ensure_model(self, name, progress=True):
        self.ensured.append(name)
        return Path(f"/nonexistent/tiny-{name}")

    def tokenize_text(self, model_dir):
        return np.random.default_rng(5).integers(3, 96, size=self.n_tokens)

    def load(self, model_dir, dtype=np.float32):
        self.loaded.append(np.dtype(dtype))
        return tiny_model(self.family, seed=3, dtype=dtype)

    def write_figures(self, results, out):
        self.figures.append(Path(out))
        return []


#: the options every probe run starts from (small enough for the tiny model)
BASE = ["--model", "tiny", "--methods", "rtn", "--settings", "W16A4", "--eval-windows", "2",
        "--calib-windows", "2", "--micro-rows", "48", "--max-sweeps", "1", "--no-figures"]


#: the micro optimizer's probes: torq-micro on fewer rows (the fit is the slow part)
MICRO = ("--methods", "torq-micro", "--micro-rows", "24")

_RUNS: dict = {}


def run_cli(monkeypatch, tmp_path: Path, argv, **fake) -> tuple[dict, FakeModels]:
    """(results.json as written, the fake) of ``python -m torq_ref run ARGV --out TMP`` (a run
    is made once per module for the same arguments: runs are deterministic, TQ-4.5)."""
    from torq_ref.cli import main

    key = (tuple(argv), tuple(sorted(fake.items())))
    if key not in _RUNS:
        models = FakeModels(monkeypatch, **fake)
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        models.out = out
        argv = [a.replace("{out}", str(out)) for a in argv]
        assert main(["run", *argv, "--out", str(out)]) == 0
        assert (out / "results.json").is_file()
        _RUNS[key] = json.loads((out / "results.json").read_text()), models
    return _RUNS[key]


def _rows(res) -> dict:
    return {(r["method"], r["setting"]): r["window_nll"] for r in res["results"]}


def rows_differ(base, alt) -> bool:
    return _rows(base) != _rows(alt) or json.dumps(base["per_site"], sort_keys=True) != json.dumps(
        alt["per_site"], sort_keys=True)


@dataclass(frozen=True)
class Probe:
    """``add``: the option's argv; ``keys``: the settings of results.json it must change;
    ``differ``: the rows / site metrics must change too; ``base_add``: what both runs add to BASE
    (methods the option acts on); ``drop``: BASE flags the probe run leaves out; ``check``:
    an extra check(base, alt, fake_base, fake_alt)."""

    add: tuple = ()
    keys: tuple = ()
    differ: bool = True
    base_add: tuple = ()
    drop: tuple = ()
    check: object = None


def _check_model(base, alt, fb, fa):
    assert fb.ensured == ["tiny"] and fa.ensured == ["other"]


def _check_dtype(base, alt, fb, fa):
    assert fb.loaded == [np.dtype("float32")] and fa.loaded == [np.dtype("float64")]


def _check_eval_windows(base, alt, fb, fa):
    assert all(len(r["window_nll"]) == 2 for r in base["results"])
    assert all(len(r["window_nll"]) == 3 for r in alt["results"])


def _check_quick(base, alt, fb, fa):
    assert all(len(r["window_nll"]) == 1 for r in alt["results"])
    assert alt["settings"]["calib_windows"] == 1 and alt["settings"]["random_per_layer"] is False


def _check_methods(base, alt, fb, fa):
    assert {r["method"] for r in alt["results"]} == {"rtn", "hadamard32"}


def _check_settings(base, alt, fb, fa):
    assert {r["setting"] for r in alt["results"]} == {"W4A4"}


def _check_plan(base, alt, fb, fa):
    plan = fa.out / "plan"
    assert plan.is_dir() and any(plan.iterdir())
    assert not (fb.out / "plan").exists()


def _check_figures(base, alt, fb, fa):
    assert fb.figures == [] and len(fa.figures) == 1


def _check_fit_guard(base, alt, fb, fa):
    """--fit-guard output records the guard's choice at every site of the fitted row (TQ-2.22)."""
    assert all("fit_guard" not in v for v in base["per_site"]["torq-micro"].values())
    recs = [v["fit_guard"] for v in alt["per_site"]["torq-micro"].values()]
    assert recs and all(r["kept"] in ("fit", "start") for r in recs)


#: every option of ``run`` (its argparse dest) and how it is seen to reach its consumer
PROBES: dict[str, Probe] = {
    "model": Probe(("--model", "other"), keys=("model",), differ=False, check=_check_model),
    "eval_windows": Probe(("--eval-windows", "3"), keys=("eval_windows",), check=_check_eval_windows),
    "calib_windows": Probe(("--calib-windows", "3"), keys=("calib_windows",), base_add=MICRO),
    "dtype": Probe(("--dtype", "float64"), keys=("dtype",), check=_check_dtype),
    "quick": Probe(("--quick", "--methods", "random-orthogonal"), keys=("eval_windows", "calib_windows", "random_per_layer"),
                   base_add=("--methods", "random-orthogonal"), check=_check_quick),
    "methods": Probe(("--methods", "rtn,hadamard32"), keys=("methods",), check=_check_methods),
    "settings": Probe(("--settings", "W4A4"), keys=("settings",), check=_check_settings),
    "seed": Probe(("--seed", "1"), keys=("seed",), base_add=("--methods", "rtn,random-orthogonal")),
    "scale_rule": Probe(("--scale-rule", "ceil"), keys=("scale_rule",)),
    "weight_quant": Probe(("--weight-quant", "gptq"), keys=("weight_quant",), base_add=("--settings", "W4A4")),
    "weight_scale_rule": Probe(("--weight-scale-rule", "ceil"), keys=("weight_scale_rule",),
                               base_add=("--settings", "W4A4")),
    "scale_sites": Probe(("--scale-sites", "qkv,gate_up,o,down"), keys=("scale_sites",),
                         base_add=("--methods", "smoothrot")),
    "quant_sites": Probe(("--quant-sites", "qkv,down"), keys=("quant_sites",)),
    "macro_strategy": Probe(("--macro-strategy", "eigen_hadamard"), keys=("macro_strategy",),
                            base_add=("--methods", "torq-macro")),
    "scale_alpha": Probe(("--scale-alpha", "1.0"), keys=("scale_alpha",), base_add=("--methods", "smoothrot")),
    "beta": Probe(("--beta", "3.0"), keys=("beta",), base_add=MICRO),
    "micro_objective": Probe(("--micro-objective", "output"), keys=("micro_objective",), base_add=MICRO),
    "fit_guard": Probe(("--fit-guard", "output"), keys=("fit_guard",), base_add=MICRO, check=_check_fit_guard),
    "holdout": Probe(("--holdout", "0.5"), keys=("holdout",), base_add=MICRO),
    "max_sweeps": Probe(("--max-sweeps", "2"), keys=("max_sweeps",), base_add=MICRO),
    "micro_rows": Probe(("--micro-rows", "32"), keys=("micro_rows",), base_add=("--methods", "duquant")),
    "out": Probe((), differ=False),          # every probe run writes where --out says (run_cli reads it there)
    "no_figures": Probe((), differ=False, drop=("--no-figures",), check=_check_figures),
    "export_plan": Probe(("--export-plan", "{out}/plan"), differ=False, check=_check_plan),
    # executors and the reference cache: the numbers must NOT change (byte-identical results)
    "jobs": Probe(("--jobs", "2"), differ=False),
    "ref_cache": Probe(("--ref-cache", "off"), differ=False),
    "scheduler": Probe((), differ=False),   # needs a Dask scheduler; the parse is checked by the table
}


def run_options() -> list[str]:
    """The dests of every option of the ``run`` parser (help excepted)."""
    from torq_ref.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return [a.dest for a in sub.choices["run"]._actions if a.dest != "help"]


@pytest.mark.clause("ST-4.1", "TQ-4.1")
def test_every_run_option_has_a_probe():
    """A new option of ``run`` without an entry in PROBES fails here (and a stale entry too)."""
    assert sorted(run_options()) == sorted(PROBES)


def _argv(base_add, drop=()):
    argv = [a for a in BASE if a not in drop]
    return argv + list(base_add)


@pytest.mark.clause("ST-4.1", "TQ-4.1", "TQ-4.3")
@pytest.mark.parametrize("dest", sorted(PROBES))
def test_run_option_reaches_its_consumer(dest, monkeypatch, tmp_path):
    """The run with the option differs from the run without it in the settings it names and,
    where it must, in the rows and site metrics."""
    p = PROBES[dest]
    base, fb = run_cli(monkeypatch, tmp_path, _argv(p.base_add))
    alt, fa = run_cli(monkeypatch, tmp_path, _argv(p.base_add, p.drop) + list(p.add))
    for key in p.keys:
        assert base["settings"][key] != alt["settings"][key], f"{dest}: settings[{key!r}] unchanged"
    free = set(p.keys) | {"model_dir", "timings"}
    others = {k for k in base["settings"] if k not in free and k != "model"}
    if dest not in ("methods", "settings", "quick"):
        assert {k: base["settings"][k] for k in others} == {k: alt["settings"][k] for k in others}
    if p.differ:
        assert rows_differ(base, alt), f"{dest}: the rows did not change"
    if p.check is not None:
        p.check(base, alt, fb, fa)


# --- results.json: every settings key present and round-tripping (TQ-4.3)

#: the settings keys of results.json that spec/TQ.md TQ-4.3 names besides the RunSpec and
#: TorqConfig fields ("every knob, the model, its directory, the BOS id")
RUN_KEYS = ("model", "model_dir", "bos_id", "n_tokens", "text")


@pytest.mark.clause("TQ-4.3", "ST-4.1")
def test_results_json_records_every_setting(monkeypatch, tmp_path):
    """Every RunSpec and TorqConfig field and the model keys are in results.json's settings, with
    the value the run used (JSON lists for tuples)."""
    from torq_ref.cli import build_parser
    from torq_ref.torq.cli import settings_from_args

    argv = BASE + ["--beta", "7.5", "--scale-rule", "even", "--quant-sites", "qkv,o"]
    res, _ = run_cli(monkeypatch, tmp_path, argv)
    FakeModels(monkeypatch)
    spec, cfg = settings_from_args(build_parser().parse_args(["run", *argv]))
    want = {**asdict(spec), **asdict(cfg)}
    settings = res["settings"]
    missing = sorted((set(want) | set(RUN_KEYS)) - set(settings))
    assert not missing, f"results.json settings lack {missing}"
    for key, value in want.items():
        if key == "model":
            continue
        got = settings[key]
        assert (tuple(got) if isinstance(value, tuple) else got) == value, key
    assert settings["model"] == "tiny" and settings["bos_id"] is None and settings["n_tokens"] == 8 * W
    for key in ("results", "per_site", "settings", "seed", "versions", "timings"):
        assert key in res
    assert res["seed"] == cfg.seed


#: the settings that may differ within a seed study (spec/EV.md EV-5.1), pinned here
FREE = ("seed", "methods", "settings", "progress", "model_dir")


@pytest.mark.clause("EV-5.1", "ST-4.1")
def test_report_seeds_refuses_runs_differing_in_any_setting(monkeypatch, tmp_path):
    """For every settings key of a real results.json other than the free ones, two runs that
    differ in it (seeds 0 and 1 otherwise) are refused by ``report --seeds``."""
    from torq_ref.cli import main
    from torq_ref.evaluate.seed_spread import FREE_SETTINGS

    assert set(FREE_SETTINGS) == set(FREE)             # the free keys EV-5.1 names, and no more
    res, _ = run_cli(monkeypatch, tmp_path, BASE)
    keys = sorted(set(res["settings"]) - set(FREE))
    assert len(keys) > 20
    a = dict(res, seed=0, settings={**res["settings"], "seed": 0})
    pa = tmp_path / "a.json"
    pa.write_text(json.dumps(a))
    pb = tmp_path / "b.json"
    b = dict(res, seed=1, settings={**res["settings"], "seed": 1})
    pb.write_text(json.dumps(b))
    assert main(["report", "--seeds", f"{pa},{pb}"]) == 0        # differing only in seed: accepted
    for key in keys:
        changed = dict(b, settings={**b["settings"], key: ["changed", key]})
        pb.write_text(json.dumps(changed))
        assert main(["report", "--seeds", f"{pa},{pb}"]) == 2, key
