"""The rotation kinds: hadamard, rotate-quantize, schur-horn, maxent (spec/CF.md section 5) and
their golden vectors (spec/GV.md section 7)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from torq_ref import golden, mx
from torq_ref.conformance import check
from torq_ref.conformance.profiles import ProfileError
from torq_ref.golden.hexio import from_hex
from torq_ref.rotations import kernel_bounds as kb

GOLD = golden.committed_dir()


@pytest.fixture(scope="module")
def vs():
    return golden.read_tree(GOLD)


def butterfly(x, block):
    return kb.butterfly_float32(x, block)


def _q(y):
    t = mx.quantize(np.asarray(y, np.float32), "e2m1", backend="numpy")
    return t.codes, t.scales


def rq_exact(x, R):
    return _q(kb.rotate_blocks(x, R))


def rq_order(x, R, reverse=False):
    """A fused kernel: float32 accumulation, one product at a time, in the given order."""
    b = R.shape[0]
    xb = x.reshape(x.shape[0], -1, b)
    acc = np.zeros(xb.shape, np.float32)
    for j in (range(b)[::-1] if reverse else range(b)):
        acc = (acc + xb[:, :, j:j + 1] * R[j][None, None, :]).astype(np.float32)
    return _q(acc.reshape(x.shape))


# ----------------------------------------------------------------------------------- hadamard
@pytest.mark.clause("CF-5.1", "CF-5.2")
def test_conventions_and_orders():
    for b in (2, 4, 16, 64):
        x = np.random.default_rng(b).standard_normal((3, 2 * b))
        for conv in kb.ALL_CONVENTIONS:
            m, c = kb.convention_matrix(b, conv)
            want = (x.reshape(3, 2, b) @ m * c).reshape(x.shape)
            assert np.allclose(kb.apply_hadamard(x, b, conv), want, rtol=0, atol=1e-12)
    w = kb.hadamard_pm1(32, "sequency")
    assert [int((np.diff(r) != 0).sum()) for r in w] == list(range(32))      # k sign changes
    h = kb.hadamard_pm1(8)
    assert np.array_equal(h[1], [1, -1, 1, -1, 1, -1, 1, -1])                  # Sylvester order
    for bad in (3, 1, 2 ** 15, 12):
        with pytest.raises(ValueError, match="power of two"):
            kb.check_block(bad)
    with pytest.raises(ProfileError, match="unknown profile option"):
        check("hadamard", butterfly, profile="ocp+walsh")


@pytest.mark.clause("CF-5.2", "CF-5.5")
def test_verdict_names_the_convention():
    assert check("hadamard", butterfly).passed
    unn = check("hadamard", lambda x, b: kb.butterfly_float32(x, b, False))
    assert {r.rule for r in unn.failures} == {"unnormalized"}
    assert unn.failing_causes() == {"HadamardConvention"}
    assert unn.per_cause["HadamardConvention[unnormalized]"]["clause"] == "CF-5.2"
    assert check("hadamard", lambda x, b: kb.butterfly_float32(x, b, False),
                 profile="ocp+unnormalized").passed
    seq = check("hadamard", lambda x, b: kb.apply_hadamard(x, b, "sequency").astype(np.float32))
    assert {r.rule for r in seq.failures} == {"sequency"}
    assert check("hadamard", lambda x, b: kb.apply_hadamard(x, b, "sequency").astype(np.float32),
                 profile="ocp+sequency").passed
    # Sylvester and sequency matrices are symmetric: left multiplication is the same transform
    assert check("hadamard", butterfly, profile="ocp+left").passed


@pytest.mark.clause("CF-5.3")
def test_butterfly_bound_holds_and_is_not_vacuous(vs):
    doc = vs.docs["hadamard.json"]
    best = {True: 0.0, False: 0.0}
    for g in doc["testGroups"]:
        b = g["blockSize"]
        for t in g["tests"]:
            x = from_hex(t["x"], "float32", (t["rows"], g["n"]))
            for norm in (True, False):
                conv = "sylvester" if norm else "unnormalized"
                err = np.abs(kb.butterfly_float32(x, b, norm) - kb.apply_hadamard(x, b, conv))
                e = kb.butterfly_bound(x, b, norm)
                assert (err <= e).all(), (b, t["tcId"], norm)
                if "HadamardAdversarial" in t["flags"]:
                    best[norm] = max(best[norm], float((err / e).max()))
    assert best[False] > 0.4 and best[True] > 0.3, best
    rng = np.random.default_rng(3)
    for b in (2, 8, 512, 2 ** 14):                    # sizes the JSON does not hold
        x = rng.standard_normal((2, b)).astype(np.float32)
        assert (np.abs(butterfly(x, b) - kb.apply_hadamard(x, b)) <= kb.butterfly_bound(x, b)).all()


@pytest.mark.clause("CF-5.3", "CF-5.5")
def test_a_less_accurate_kernel_exceeds_the_bound():
    ml_dtypes = pytest.importorskip("ml_dtypes")

    def bf16(x, b):
        return butterfly(x, b).astype(ml_dtypes.bfloat16).astype(np.float32)
    rep = check("hadamard", bf16)
    assert "ExceedsButterflyBound" in rep.failing_causes()
    assert rep.per_cause["ExceedsButterflyBound"]["clause"] == "CF-5.3"

    def gemm(x, b):              # dense float32 x @ H: held to the butterfly bound
        h = (kb.hadamard_pm1(b) / math.sqrt(b)).astype(np.float32)
        return (x.reshape(x.shape[0], -1, b) @ h).reshape(x.shape)
    g = check("hadamard", gemm, level="quick")        # JSON blocks only: no 2^14 dense H
    assert g.failing_causes() <= {"ExceedsButterflyBound"}


@pytest.mark.clause("CF-5.4", "CF-5.5")
def test_large_blocks_and_other_causes():
    rep = check("hadamard", butterfly)
    assert {f"generated/hadamard_{b}" for b in (512, 16384)} <= {r.source for r in rep.results}
    quick = check("hadamard", butterfly, level="quick")
    assert not any(r.source.startswith("generated/") for r in quick.results)
    noise = check("hadamard", lambda x, b: np.random.default_rng(0).standard_normal(x.shape).astype(np.float32))
    assert noise.failing_causes() == {"NotHadamard"}
    nan = check("hadamard", lambda x, b: np.full(x.shape, np.nan, np.float32))
    assert nan.failing_causes() == {"NonFiniteOutput"}
    bad = check("hadamard", lambda x, b: x[:, :1])
    assert bad.failing_causes() == {"ConventionError"}


# ----------------------------------------------------------------------------------- rotate-quantize
@pytest.mark.clause("CF-5.6", "CF-5.8")
def test_rotate_quantize_exact_and_float32_orders():
    assert check("rotate-quantize", rq_exact).counts["acceptable"] == 0
    acc = 0
    for f in (rq_order, lambda x, R: rq_order(x, R, True),
              lambda x, R: _q((x.reshape(x.shape[0], -1, R.shape[0]) @ R).reshape(x.shape))):
        rep = check("rotate-quantize", f)
        assert rep.passed, str(rep)
        assert set(rep.per_cause) <= {"NearElementBoundary", "NearScaleBoundary"}
        acc += rep.counts["acceptable"]
    assert acc > 0          # some float32 orders do cross a boundary inside the bound
    def rceil(x, R):
        t = mx.quantize(kb.rotate_blocks(x, R).astype(np.float32), "e2m1", scale_rule="rceil",
                        backend="numpy")
        return t.codes, t.scales
    assert check("rotate-quantize", rceil, profile="nvidia").passed      # expected computed
    assert not check("rotate-quantize", rq_exact, profile="nvidia").passed


@pytest.mark.clause("CF-5.7")
def test_summation_bound_holds_for_float32_orders():
    rng = np.random.default_rng(7)
    from torq_ref.rotations.baselines import random_orthogonal
    for b in (16, 32, 64):
        R = random_orthogonal(b, b).astype(np.float32)
        x = (rng.standard_normal((64, 2 * b)) * np.exp(rng.standard_normal((64, 1)))).astype(np.float32)
        e = kb.rotation_bound(x, R)
        y = kb.rotate_blocks(x, R)
        for rev in (False, True):
            xb = x.reshape(64, -1, b)
            acc = np.zeros(xb.shape, np.float32)
            for j in (range(b)[::-1] if rev else range(b)):
                acc = (acc + xb[:, :, j:j + 1] * R[j][None, None, :]).astype(np.float32)
            assert (np.abs(acc.reshape(x.shape) - y) <= e).all()


def _perturbed(t):
    """A kernel whose rotated values are y + t e (and one with y - t e): inside the bound for
    t < 1, beyond it for t > 1."""
    def kern(x, R, sign):
        y = kb.rotate_blocks(x, R) + sign * t * kb.rotation_bound(x, R)
        return _q(y)
    return (lambda x, R: kern(x, R, 1.0)), (lambda x, R: kern(x, R, -1.0))


@pytest.mark.clause("CF-5.8")
def test_inside_acceptable_outside_exact(vs):
    groups = vs.docs["rotate_quantize.json"]["testGroups"]
    ratios = {f: [t["boundaryRatio"] for g in groups for t in g["tests"] if f in t["flags"]]
              for f in ("NearElementBoundary", "NearScaleBoundary", "OutsideElementBound", "OutsideScaleBound")}
    assert all(r < 1 for f in ("NearElementBoundary", "NearScaleBoundary") for r in ratios[f])
    assert all(1 < r < 3 for f in ("OutsideElementBound", "OutsideScaleBound") for r in ratios[f])
    assert min(ratios["NearElementBoundary"]) < 0.01 and min(ratios["OutsideScaleBound"]) < 1.3
    for kern in _perturbed(0.9):
        assert check("rotate-quantize", kern).passed
    fails = set()
    for kern in _perturbed(3.0):
        rep = check("rotate-quantize", kern)
        assert not rep.passed
        fails |= {f for r in rep.failures for f in r.flags}
    assert {"OutsideElementBound", "OutsideScaleBound"} <= fails


@pytest.mark.clause("CF-5.9")
def test_planted_fused_kernels_get_their_cause():
    cases = {"RotationSignConvention": lambda x, R: rq_exact(x, -R),
             "TransposedRotation": lambda x, R: rq_exact(x, R.T.copy()),
             "NotRotated": lambda x, R: _q(x)}
    for cause, kern in cases.items():
        rep = check("rotate-quantize", kern)
        assert rep.failing_causes() == {cause}, (cause, rep.per_cause)
        assert rep.per_cause[cause]["clause"] == "CF-5.9"

    def cols(x, R):                   # the sign of columns 1 and 5 of R flipped
        s = np.ones(R.shape[0], np.float32)
        s[[1, 5]] = -1
        return rq_exact(x, R * s)
    rep = check("rotate-quantize", cols)
    assert rep.failing_causes() == {"RotationSignConvention"}
    assert "columns of R with flipped sign: [1, 5]" in rep.failures[0].detail

    def unrot(x, R):
        y = kb.rotate_blocks(x, R).astype(np.float32).astype(np.float64)
        s = mx.quantize(x, "e2m1", backend="numpy").scales
        q = np.ldexp(y.reshape(y.shape[0], -1, 32), (127 - s.astype(np.int64))[..., None])
        return mx.encode(q, "e2m1").reshape(x.shape), s
    rep = check("rotate-quantize", unrot)
    assert rep.failing_causes() == {"ScaleFromUnrotated"}
    assert "breaks CF-5.9" in str(rep) and "R = H(" in str(rep)


# ----------------------------------------------------------------------------------- builders
def sh_ref(lam, t):
    from torq_ref.rotations.schur_horn import schur_horn
    return schur_horn(np.diag(lam), t).matrix()


@pytest.mark.clause("CF-5.10")
def test_schur_horn_properties():
    assert check("schur-horn", sh_ref).passed
    assert check("schur-horn", lambda lam, t: sh_ref(lam, t).T).failing_causes() == {"TransposedQ"}
    assert check("schur-horn", lambda lam, t: sh_ref(lam, t).astype(np.float32)).failing_causes() \
        == {"NotOrthogonal"}

    def no_check(lam, t):                    # never refuses: returns some orthogonal matrix
        return np.linalg.qr(np.random.default_rng(0).standard_normal((lam.size,) * 2))[0]
    assert "AcceptedNonMajorized" in check("schur-horn", no_check).failing_causes()

    def refuses(lam, t):
        raise ValueError("no")
    assert check("schur-horn", refuses).failing_causes() == {"RefusedMajorized"}


@pytest.mark.clause("CF-5.11")
def test_maxent_property_without_running_the_optimizer():
    from torq_ref.rotations.baselines import sylvester_hadamard
    assert check("maxent", lambda X, seed: sylvester_hadamard(32)).passed
    assert check("maxent", lambda X, seed: np.eye(32)).failing_causes() == {"HeldoutBelowReference"}
    assert check("maxent", lambda X, seed: sylvester_hadamard(32) * 1.001).failing_causes() == {"NotOrthogonal"}
    assert check("maxent", lambda X, seed: np.eye(31)).failing_causes() == {"BadOutput"}


@pytest.mark.slow
@pytest.mark.clause("CF-5.11", "GV-7.4")
def test_maxent_reference_passes_and_matches_golden(vs):
    from torq_ref.rotations.maxent import maxent_rotation
    from torq_ref.rotations.maxent_eval import heldout_objective
    rep = check("maxent", lambda X, seed: maxent_rotation(X, seed=seed)[0])
    assert rep.passed
    a, _ = vs.bulk["maxent_heldout"]
    me = next(g for g in vs.docs["rotation_builders.json"]["testGroups"] if g["type"] == "Maxent")
    j = heldout_objective(a["xHeld"], maxent_rotation(a["xCal"], seed=1)[0], me["beta"])
    assert j == from_hex(me["jReference"], "float64")[1]          # the golden value, bit for bit


@pytest.mark.clause("CF-5.12", "CF-1.3")
def test_cli_runs_the_rotation_kinds():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "torq_ref", "conformance", *args],
                              capture_output=True, text=True)
    ok = run("--kernel", "torq_ref.rotations.kernel_bounds:butterfly_float32", "--kind", "hadamard")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASSED" in ok.stdout
    bad = run("--kernel", "torq_ref.rotations.kernel_bounds:apply_hadamard", "--kind", "hadamard",
              "--profile", "ocp+unnormalized", "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["perCause"]["HadamardConvention[sylvester]"]["fail"] > 0


# ----------------------------------------------------------------------------------- golden
@pytest.mark.clause("GV-7.1")
def test_hadamard_golden_is_the_oracle(vs):
    doc = vs.docs["hadamard.json"]
    assert [g["blockSize"] for g in doc["testGroups"]] == [16, 32, 64, 128, 256]
    for g in doc["testGroups"]:
        for t in g["tests"]:
            x = from_hex(t["x"], "float32", (t["rows"], g["n"]))
            assert np.array_equal(from_hex(t["y"], "float64", x.shape), kb.apply_hadamard(x, g["blockSize"]))
            assert np.array_equal(from_hex(t["bound"], "float64", x.shape),
                                  kb.butterfly_bound(x, g["blockSize"], True))


@pytest.mark.clause("GV-7.2")
def test_rotate_quantize_golden_is_the_oracle(vs):
    for g in vs.docs["rotate_quantize.json"]["testGroups"]:
        R = from_hex(g["R"], "float32", (g["rotationSize"],) * 2)
        x = np.stack([from_hex(t["x"], "float32", (g["n"],)) for t in g["tests"]])
        c, s = rq_exact(x, R)
        assert np.array_equal(c, np.stack([from_hex(t["codes"], "uint8") for t in g["tests"]]))
        assert np.array_equal(s, np.stack([from_hex(t["scales"], "uint8") for t in g["tests"]]))
    assert {g["rotationSize"] for g in vs.docs["rotate_quantize.json"]["testGroups"]} == {16, 32, 64}


@pytest.mark.clause("GV-7.3", "GV-7.4")
def test_builder_golden(vs):
    from torq_ref.rotations.schur_horn import check_majorization, MajorizationError
    doc = vs.docs["rotation_builders.json"]
    sh = next(g for g in doc["testGroups"] if g["type"] == "SchurHorn")
    for t in sh["tests"]:
        lam, tg = from_hex(t["eigvals"], "float64"), from_hex(t["target"], "float64")
        if t["expect"] == "refuse":
            with pytest.raises(MajorizationError):
                check_majorization(tg, lam, tol=1e-6 * np.abs(lam).max())
        else:
            check_majorization(tg, lam, tol=1e-12 * lam.size * np.abs(lam).max())
    me = next(g for g in doc["testGroups"] if g["type"] == "Maxent")
    a, _ = vs.bulk["maxent_heldout"]
    assert a["xCal"].shape == (1024, 64) and a["xHeld"].shape == (512, 64)
    assert len(from_hex(me["jReference"], "float64")) == len(me["tests"]) == 4


@pytest.mark.clause("GV-7.1", "GV-2.1")
def test_rotation_schema_describes_every_property():
    pytest.importorskip("jsonschema")
    from torq_ref.golden.io import schema
    s = schema("rotation_vectors.schema.json")
    import jsonschema
    jsonschema.Draft202012Validator.check_schema(s)
    missing = []

    def walk(node, path):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    missing.append(f"{path}/{name}")
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
    walk(s, "")
    assert not missing, missing
