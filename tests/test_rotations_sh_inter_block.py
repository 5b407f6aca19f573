"""The inter-block (macro) rotation, the comparison and the benchmark CLI (spec/SH.md 5, 6)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.experiments.inter_block import run_comparison
from torq_ref.rotations.baselines import block_hadamard, hadamard
from torq_ref.rotations.inter_block import (
    STRATEGIES, choose_strategy, compare_strategies, macro_rotation, select_macro_rotation,
    synthetic_split)
from torq_ref.rotations.metrics import second_moment


@pytest.fixture(scope="module")
def data():
    return synthetic_split(64, 512, 256, seed=3)


@pytest.mark.clause("SH-5.1")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_macro_rotation_orthogonal_and_folds(data, strategy):
    calib, held = data
    c = second_moment(calib)
    m = macro_rotation(c, strategy, block_size=16)
    mat = m.matrix()
    assert mat.shape == (64, 64)
    assert np.max(np.abs(mat.T @ mat - np.eye(64))) <= 1e-12
    np.testing.assert_allclose(m.apply(held), held @ mat, atol=1e-10)
    np.testing.assert_allclose(m.apply_transpose(m.apply(held)), held, atol=1e-10)
    w = np.random.default_rng(0).standard_normal((10, 64))
    np.testing.assert_allclose(m.apply(held) @ m.apply(w).T, held @ w.T, atol=1e-9)
    np.testing.assert_allclose(m.apply(held.T, axis=0), (held @ mat).T, atol=1e-10)
    if strategy in ("schur_horn", "hadamard_schur_horn", "eigen_hadamard",
                    "block_hadamard_schur_horn"):
        d = np.diag(mat.T @ c @ mat)
        np.testing.assert_allclose(d, np.trace(c) / 64, rtol=0, atol=1e-9 * np.max(np.abs(c)))


@pytest.mark.clause("SH-5.1")
def test_macro_rotation_structure_and_errors(data):
    c = second_moment(data[0])
    assert np.array_equal(macro_rotation(c, "block_hadamard", block_size=16).matrix(),
                          block_hadamard(64, 16))
    np.testing.assert_allclose(macro_rotation(c, "hadamard").matrix(), hadamard(64), atol=1e-15)
    assert np.array_equal(macro_rotation(c, "identity").matrix(), np.eye(64))
    with pytest.raises(ValueError, match="unknown strategy"):
        macro_rotation(c, "magic")
    # n with no global Hadamard (n = 2 mod 4): falls back to the largest block Hadamard
    c6 = second_moment(np.random.default_rng(0).standard_normal((20, 6)))
    m6 = macro_rotation(c6, "hadamard", block_size=2).matrix()
    assert np.max(np.abs(m6.T @ m6 - np.eye(6))) <= 1e-12


@pytest.mark.clause("SH-5.2", "SH-5.3")
def test_compare_and_choose(data):
    calib, held = data
    rows = compare_strategies(calib, held, ("identity", "schur_horn", "block_hadamard"),
                              block_size=16)
    assert [r["strategy"] for r in rows] == ["identity", "schur_horn", "block_hadamard"]
    by = {r["strategy"]: r for r in rows}
    # equalisation lowers the imbalance; a rotation helps heavy-tailed data
    assert by["schur_horn"]["imbalance_heldout"] < by["identity"]["imbalance_heldout"]
    assert by["identity"]["rotations"] == 0 and 0 < by["schur_horn"]["rotations"] <= 63
    best = choose_strategy(rows)
    assert by[best]["nmse_heldout"] == min(r["nmse_heldout"] for r in rows)
    assert best != "identity"
    # ties go to the first listed; an empty list is an error
    tie = [{"strategy": "a", "nmse_heldout": 1.0}, {"strategy": "b", "nmse_heldout": 1.0}]
    assert choose_strategy(tie) == "a"
    with pytest.raises(ValueError):
        choose_strategy([])
    rows_v = compare_strategies(calib, held[128:], ("identity", "block_hadamard"), block_size=16,
                                validation=held[:128])
    assert all("nmse_validation" in r for r in rows_v)
    pick = choose_strategy(rows_v, key="nmse_validation")
    assert pick == min(rows_v, key=lambda r: r["nmse_validation"])["strategy"]
    name, m, rows2 = select_macro_rotation(calib, held, ("identity", "schur_horn", "block_hadamard"),
                                           block_size=16)
    assert name == best and m.name == best
    assert [r["nmse_heldout"] for r in rows2] == [r["nmse_heldout"] for r in rows]


def _parse(argv):
    from torq_ref.cli import build_parser

    return build_parser().parse_args(argv)


@pytest.mark.clause("SH-5.4")
def test_compare_cli_synthetic(tmp_path, capsys):
    out = tmp_path / "r.md"
    args = _parse(["experiment", "inter-block", "--source", "synthetic", "--layers", "0",
                   "--sites", "o", "--calib-windows", "1", "--heldout-windows", "1",
                   "--out", str(out)])
    assert args.func(args) == 0
    text = out.read_text()
    assert "SYNTHETIC" in text and "| 0 | o | 576 |" in text and "Chosen by held-out" in text
    assert "per-site choice made on the validation rows" in text
    for s in STRATEGIES:
        assert s in text
    text2 = run_comparison(source="synthetic", layers=[1], sites=["o"], calib_windows=1,
                           heldout_windows=1, strategies=("identity", "block_hadamard"))
    assert "block_hadamard" in text2


@pytest.mark.clause("SH-6.1")
def test_bench_cli_small(capsys):
    args = _parse(["bench", "schur-horn", "--n", "64", "200"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| 64 |" in out and "| 200 |" in out and "| yes |" in out
    assert "NO" not in out


@pytest.mark.clause("SH-5.4", "ME-5.2")
def test_rotations_never_import_the_model():
    """House rule: the experiments that need torq_ref.model sit above it; rotations/ is below it."""
    import re
    from pathlib import Path

    import torq_ref.rotations as R
    for path in sorted(Path(R.__file__).parent.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"torq_ref\.model|from \.\.model|import model", text), path.name
