"""Converse properties of the package's validators (spec/ST.md ST-4.3): each is given an input
that breaks only the part of its rule that is easy to forget, and must refuse it; and every field
of the public result records is read by some test."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def skewed(n: int) -> np.ndarray:
    """A matrix with unit column norms whose columns are not orthogonal (a shear of I)."""
    m = np.eye(n)
    m[0, 1] = 1.0
    return m / np.linalg.norm(m, axis=0)


def scaled_orthogonal(n: int) -> np.ndarray:
    """Orthogonal columns of norm 1.001 (M^T M = 1.001^2 I: diagonal, but not I)."""
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((n, n)))
    return 1.001 * q


# --- orthogonality checks: a skewed matrix with unit column norms is refused everywhere

@pytest.mark.clause("ST-4.3", "FW-3.4")
@pytest.mark.parametrize("make", [skewed, scaled_orthogonal])
def test_transform_refuses_non_orthogonal(make):
    """A dense transform matrix, a shared block rotation, and a per-block rotation whose LAST
    block alone is bad are all refused (FW-3.4)."""
    from torq_ref.model.hooks import Transform, TransformError

    assert np.allclose(np.linalg.norm(skewed(64), axis=0), 1.0)
    with pytest.raises(TransformError, match="not orthogonal"):
        Transform(matrix=make(64)).materialize(64)
    with pytest.raises(TransformError, match="not orthogonal"):
        Transform(block=make(32)).materialize(64)
    blocks = np.stack([np.eye(32), make(32)])
    with pytest.raises(TransformError, match="not orthogonal"):
        Transform(block=blocks).materialize(64)
    Transform(matrix=np.eye(64), block=np.stack([np.eye(32)] * 2)).materialize(64)    # the converse


@pytest.mark.clause("ST-4.3", "SH-3.5")
@pytest.mark.parametrize("make", [skewed, scaled_orthogonal])
def test_dense_orthogonal_and_givens_factor_refuse_non_orthogonal(make):
    from torq_ref.rotations.baselines import DenseOrthogonal
    from torq_ref.rotations.schur_horn import givens_factor

    with pytest.raises(ValueError, match="not orthogonal"):
        DenseOrthogonal(make(8))
    with pytest.raises(ValueError, match="not orthogonal"):
        givens_factor(make(8))
    DenseOrthogonal(np.eye(8))


@pytest.mark.clause("ST-4.3", "ME-3.1")
@pytest.mark.parametrize("make", [skewed, scaled_orthogonal])
def test_maxent_init_refuses_non_orthogonal(make):
    from torq_ref.rotations.maxent import MaxentInputError, maxent_rotation

    X = np.random.default_rng(0).standard_normal((16, 32))
    with pytest.raises(MaxentInputError, match="not orthogonal"):
        maxent_rotation(X, init=make(32), max_sweeps=1)


# --- majorization: the right sum is not enough

@pytest.mark.clause("ST-4.3", "SH-2.5")
def test_majorization_needs_every_partial_sum():
    """A target with the source's sum and largest entry, but a larger sum of its two largest
    entries, is not majorized; one with equal partial sums is (the boundary); a target whose
    partial sums are fine but whose total is short is not."""
    from torq_ref.rotations.schur_horn import MajorizationError, check_majorization

    source = np.array([4.0, 1.0, 1.0, 0.0])
    check_majorization(np.array([4.0, 1.0, 0.5, 0.5]), source)          # majorized
    check_majorization(source[::-1].copy(), source)                     # equal partial sums: on the boundary
    bad = np.array([4.0, 2.0, 0.0, 0.0])                                # sum 6, max 4, top-2 sum 6 > 5
    assert bad.sum() == source.sum() and bad.max() == source.max()
    with pytest.raises(MajorizationError, match="2 largest"):
        check_majorization(bad, source)
    with pytest.raises(MajorizationError, match="totals differ"):
        check_majorization(np.array([1.5, 1.5, 1.5, 1.0]), source)
    eps = np.spacing(5.0)
    check_majorization(np.array([4.0, 1.0 + eps, 1.0 - eps, 0.0]), source, tol=eps)   # within tol
    with pytest.raises(MajorizationError):
        check_majorization(np.array([4.0, 1.0 + 4 * eps, 1.0 - 4 * eps, 0.0]), source, tol=eps)


@pytest.mark.clause("ST-4.3")
def test_symmetry_check_sees_one_asymmetric_entry():
    from torq_ref.rotations.schur_horn import SymmetricMatrixError, check_symmetric

    C = np.eye(300)
    C[299, 3] = 1e-3                      # past the first chunk of 256 rows, one entry only
    with pytest.raises(SymmetricMatrixError, match="not symmetric"):
        check_symmetric(C)
    C[3, 299] = 1e-3
    check_symmetric(C)


# --- golden files: a valid schema is not a valid file

@pytest.mark.clause("ST-4.3", "GV-1.2", "GV-6.1")
def test_manifest_refuses_a_wrong_sha256_of_the_right_size(tmp_path):
    """A golden file whose bytes keep their size and their JSON validity but not their sha256
    is refused by ``verify_manifest``."""
    from torq_ref.golden.io import GoldenFormatError, verify_manifest

    (tmp_path / "a.json").write_bytes(b'{"x": 1}')
    entry = {"path": "a.json", "sha256": "0" * 64, "bytes": 8, "cases": 0}
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"files": [entry]}))
    with pytest.raises(GoldenFormatError, match="does not match"):
        verify_manifest(tmp_path)
    import hashlib

    entry["sha256"] = hashlib.sha256(b'{"x": 1}').hexdigest()
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"files": [entry]}))
    verify_manifest(tmp_path)
    entry["bytes"] = 9                                   # right sha256, wrong size
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"files": [entry]}))
    with pytest.raises(GoldenFormatError, match="does not match"):
        verify_manifest(tmp_path)


def _doc():
    return {"numberOfTests": 2, "notes": {"A": {}},
            "testGroups": [{"tests": [{"tcId": 1, "flags": ["A"]}]}, {"tests": [{"tcId": 2, "flags": []}]}]}


@pytest.mark.clause("ST-4.3", "GV-2.2", "GV-2.3")
@pytest.mark.parametrize("breakage, match", [
    (lambda d: d["testGroups"][1]["tests"][0].update(tcId=1), "not unique"),        # ids unique across groups
    (lambda d: d["testGroups"][1]["tests"][0].update(flags=["B"]), "without a notes entry"),
    (lambda d: d.update(numberOfTests=1), "numberOfTests"),
])
def test_doc_structure_refuses_each_broken_part(breakage, match):
    from torq_ref.golden.io import GoldenFormatError, check_doc_structure

    check_doc_structure(_doc())
    doc = _doc()
    breakage(doc)
    with pytest.raises(GoldenFormatError, match=match):
        check_doc_structure(doc)


# --- settings, shape and name validators at their boundaries

@pytest.mark.clause("ST-4.3", "TQ-6.2")
def test_check_rows_boundary():
    from torq_ref.torq import TorqConfig
    from torq_ref.torq.engine import check_rows, held_out_rows
    from torq_ref.torq.methods import SettingsError

    cfg = TorqConfig(micro_rows=10)
    check_rows(11, cfg)
    with pytest.raises(SettingsError):
        check_rows(10, cfg)
    assert held_out_rows(np.zeros((11, 4)), cfg).shape == (1, 4)
    with pytest.raises(SettingsError):
        held_out_rows(np.zeros((10, 4)), cfg)


@pytest.mark.clause("ST-4.3", "TQ-4.2")
def test_name_validators_refuse_near_misses():
    """A rule or format name one letter off is refused; a scale rule's case is normalised."""
    from torq_ref.conformance import check_fmt
    from torq_ref.mx.formats import check_scale_rule

    check_scale_rule("floor")
    check_fmt("e2m1")
    assert check_scale_rule("FLOOR") == "floor"
    for bad in ("floors", "flor", "floor ", ""):
        with pytest.raises(Exception, match="floor|rule"):
            check_scale_rule(bad)
    for bad in ("E2M1", "e2m1x", "e2m2"):
        with pytest.raises(Exception, match="e2m"):
            check_fmt(bad)


@pytest.mark.clause("ST-4.3")
def test_check_tensors_refuses_one_wrong_shape():
    """Every tensor name present but one with its axes swapped: refused (names are not enough)."""
    from torq_ref.model.tiny import TINY_CONFIGS, random_tensors
    from torq_ref.model.config import parse_config
    from torq_ref.model.weights import check_tensors
    from torq_ref.model.errors import ModelError

    raw = TINY_CONFIGS["llama"]
    cfg = parse_config(raw)
    t = random_tensors(raw, 0)
    check_tensors(t, cfg)
    name = next(k for k, v in t.items() if v.ndim == 2 and v.shape[0] != v.shape[1] and "layers.1." in k)
    t[name] = t[name].T.copy()
    with pytest.raises(ModelError):
        check_tensors(t, cfg)


@pytest.mark.clause("ST-4.3", "FW-2.5")
def test_check_ids_boundary():
    from torq_ref.model.errors import ModelError
    from torq_ref.model.tiny import tiny_model

    m = tiny_model("llama", seed=0)
    V = m.config.vocab_size
    m.check_ids(np.array([[0, V - 1]]))
    for bad in ([[0, V]], [[-1, 0]]):
        with pytest.raises(ModelError):
            m.check_ids(np.array(bad))


# --- every field of a public result record is read by a test

_WORKING = ("a working record of the conformance judges, built and consumed inside the harness "
            "(the verdicts, causes and reports it leads to are what the conformance tests read)")
_PROFILE = ("a profile is an input of the harness, not a result: its fields are read by the judging "
            "code, and the conformance tests check the verdict each profile gives")
#: fields that no test reads, each with its reason (an empty reason is not accepted)
UNREAD_ALLOWED: dict[str, str] = {
    "torq_ref.conformance.judge.Case.variants": _WORKING,
    "torq_ref.conformance.judge.Case.others": _WORKING,
    "torq_ref.conformance.judge.Pending.render": _WORKING,
    "torq_ref.conformance.judge.Pending.candidates": _WORKING,
    "torq_ref.conformance.judge.Pending.profile": _WORKING,
    "torq_ref.conformance.quantize_block.Judging.profile": _WORKING,
    "torq_ref.conformance.quantize_block.Judging.call": _WORKING,
    "torq_ref.conformance.quantize_block.Judging.candidates": _WORKING,
    "torq_ref.conformance.quantize_block.Judging.output_name": _WORKING,
    "torq_ref.conformance.profiles.Profile.acceptable_flags": _PROFILE,
    "torq_ref.conformance.profiles.Profile.acceptable_rules": _PROFILE,
    "torq_ref.conformance.profiles.Profile.evidence": _PROFILE,
    "torq_ref.conformance.profiles.Profile.extra": _PROFILE,
    "torq_ref.conformance.profiles.Profile.nvfp4_global": _PROFILE,
    "torq_ref.conformance.profiles.Profile.hadamard_norm": _PROFILE,
    "torq_ref.conformance.profiles.Profile.hadamard_order": _PROFILE,
    "torq_ref.conformance.profiles.Profile.hadamard_side": _PROFILE,
    "torq_ref.conformance.quantize_block.Judging.accepted_rule": _WORKING,
    "torq_ref.conformance.quantize_nvfp4.Nvfp4Context.arg": _WORKING,
    "torq_ref.conformance.quantize_nvfp4.Nvfp4Context.quotients": _WORKING,
    "torq_ref.golden.cases.InputCase.params": "an input case's generator parameters, written to the vector files "
                                             "and read back there by the golden tests as JSON keys",
}


@pytest.mark.clause("ST-4.3", "MX-2.1")
def test_element_format_fields():
    """The fields of every ElementFormat against OCP MX v1.0 section 5.3 (Table 3)."""
    from torq_ref.mx.formats import FORMATS

    want = {"e2m1": (2, 1, 1, 2, False, False), "e2m3": (2, 3, 1, 2, False, False),
            "e3m2": (3, 2, 3, 4, False, False), "e4m3": (4, 3, 7, 8, False, True),
            "e5m2": (5, 2, 15, 15, True, True)}
    for name, (ebits, mbits, bias, emax, inf, nan) in want.items():
        f = FORMATS[name]
        assert (f.ebits, f.mbits, f.bias, f.emax, f.has_inf, f.has_nan) == (ebits, mbits, bias, emax, inf, nan), name


@pytest.mark.clause("ST-4.3")
def test_model_record_fields():
    """ModelConfig, RopeConfig, LayerWeights, RopeTables and the registry's entries carry what
    their source says."""
    from torq_ref.model.config import parse_config
    from torq_ref.model.registry import REGISTRY
    from torq_ref.model.tiny import TINY_CONFIGS, tiny_model

    raw = TINY_CONFIGS["llama3_tied"]
    cfg = parse_config(raw)
    assert (cfg.num_heads, cfg.num_kv_heads) == (raw["num_attention_heads"], raw["num_key_value_heads"])
    assert cfg.raw == raw
    rs = raw["rope_scaling"]
    assert (cfg.rope.low_freq_factor, cfg.rope.high_freq_factor, cfg.rope.original_max_position_embeddings) == (
        rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"])
    assert tiny_model("qwen3").layers[0].k_norm is not None            # Qwen3 normalizes q and k per head
    assert tiny_model("llama").layers[0].k_norm is None
    assert tiny_model("llama").rope_tables(17).seq_len == 17
    dirs = [e.dir_name for e in REGISTRY.values()]
    assert len(set(dirs)) == len(dirs) and all(dirs)
    assert all(e.gguf_name.endswith(".gguf") for e in REGISTRY.values())


@pytest.mark.clause("ST-4.3", "ME-3.1")
def test_sweep_records_are_numbered():
    from torq_ref.rotations.maxent import maxent_rotation

    _, rep = maxent_rotation(np.random.default_rng(0).standard_normal((32, 32)), max_sweeps=2)
    assert [s.sweep for s in rep.sweeps] == list(range(len(rep.sweeps)))


@pytest.mark.clause("ST-4.3", "GV-1.2")
def test_golden_tree_records_its_generator():
    from torq_ref.golden.flag import Flag
    from torq_ref.golden.io import read_tree

    vs = read_tree(ROOT / "golden")
    manifest = json.loads((ROOT / "golden" / "MANIFEST.json").read_text())
    assert (vs.generator_version, vs.level, vs.seed) == (manifest["generatorVersion"], manifest["level"], manifest["seed"])
    f = Flag("X", "EdgeCase", "d", "MX-4.2")
    assert f.note()["bugType"] == f.bug_type == "EdgeCase"


@pytest.mark.clause("ST-4.3", "CF-1.1")
def test_report_fields():
    """A report names its profile, and lists at most max_failures failures."""
    from torq_ref.conformance.report import Report

    rep = Report(kind="quantize", profile="ocp", level="default", fmt="e2m1", results=[], max_failures=3)
    assert rep.profile == "ocp" and rep.max_failures == 3
    assert rep.to_dict()["profile"] == "ocp" and "profile ocp" in rep.summary()


@pytest.mark.clause("ST-4.3", "TQ-7.4", "TQ-2.9")
def test_gptq_and_duquant_knobs_reach_their_consumers(monkeypatch):
    """TorqConfig.gptq_damp / gptq_act_order reach the row's SiteQuant, duquant_steps the
    DuQuant fit."""
    import torq_ref.torq.duquant as duquant
    from torq_ref.torq import TorqConfig
    from torq_ref.torq.engine import plan_site
    from torq_ref.torq.methods import site_transform

    cfg = TorqConfig(weight_quant="gptq", gptq_damp=0.03, gptq_act_order=False, duquant_steps=3)
    q = plan_site("rtn", "W4A4", None, cfg, "qkv")
    assert (q.weight_quant, q.gptq_damp, q.gptq_act_order) == ("gptq", 0.03, False)
    seen = []
    real = duquant.duquant_transform
    monkeypatch.setattr(duquant, "duquant_transform", lambda X, b, steps, seed: seen.append(steps) or real(X, b, steps, seed))
    X = np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32)
    site_transform("duquant", 0, "qkv", X.T @ X / len(X), X, cfg)
    assert seen == [cfg.duquant_steps] == [3]


def public_records():
    """(qualified name, field names) of every dataclass and NamedTuple defined in torq_ref's
    public modules (no leading underscore in the module or class name)."""
    import torq_ref

    out = {}
    for info in pkgutil.walk_packages(torq_ref.__path__, "torq_ref."):
        if any(part.startswith("_") for part in info.name.split(".")) or ".selftest" in info.name:
            continue
        try:
            mod = importlib.import_module(info.name)
        except ImportError:                 # an optional extra's module (torch, numba paths)
            continue
        for name, obj in vars(mod).items():
            if name.startswith("_") or not isinstance(obj, type) or obj.__module__ != mod.__name__:
                continue
            if dataclasses.is_dataclass(obj):
                fields = [f.name for f in dataclasses.fields(obj)]
            elif issubclass(obj, tuple) and hasattr(obj, "_fields"):
                fields = list(obj._fields)
            else:
                continue
            out[f"{mod.__name__}.{name}"] = fields
    return out


def read_names() -> set[str]:
    """Every attribute name read (``x.name``), string subscript (``x["name"]``) and keyword
    (``f(name=...)``, which dataclasses.replace and asdict-based checks use) in tests/."""
    names = set()
    for path in (ROOT / "tests").glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                names.add(node.slice.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"\w+", node.value):
                names.add(node.value)          # getattr(x, "name"), a key list, a parametrize id
            # (the dotted names of UNREAD_ALLOWED below are not bare words: they count as no read)
    return names


@pytest.mark.clause("ST-4.3")
def test_every_public_record_field_is_read_by_a_test():
    records = public_records()
    assert len(records) > 20
    names = read_names()
    unread = sorted(f"{rec}.{f}" for rec, fields in records.items() for f in fields
                    if f not in names and f"{rec}.{f}" not in UNREAD_ALLOWED)
    assert not unread, "fields no test reads: " + ", ".join(unread)
    assert all(UNREAD_ALLOWED.values())
    every = {f"{rec}.{f}" for rec, fields in records.items() for f in fields}
    stale = sorted(set(UNREAD_ALLOWED) - every)
    assert not stale, f"UNREAD_ALLOWED names fields that no longer exist: {stale}"
