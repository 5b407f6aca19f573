"""gpt-oss MXFP4 expert weights (spec/MX.md MX-8.8): layout, bfloat16 values, the loader's
orientation; and the committed golden file against a second formulation."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.golden.hexio import from_hex
from torq_ref.mx.gpt_oss import BF16_MAX, dequantize_gpt_oss, pack_gpt_oss


def _ops(seed=0, e=2, rows=3, k=64, lo=100, hi=254):
    rng = np.random.default_rng(seed)
    return (rng.integers(lo, hi, (e, rows, k // 32), dtype=np.uint8),
            rng.integers(0, 16, (e, rows, k), dtype=np.uint8))


@pytest.mark.clause("MX-8.8")
def test_layout_and_values_pinned():
    s = np.array([[[127, 0xFE]]], np.uint8)
    c = np.zeros((1, 1, 64), np.uint8)
    c[0, 0, 0], c[0, 0, 1], c[0, 0, 32], c[0, 0, 33] = 0x2, 0xF, 0x3, 0xB      # 1, -6 | 1.5, -1.5
    blocks, _ = pack_gpt_oss(s, c)
    assert blocks.shape == (1, 1, 2, 16) and blocks[0, 0, 0, 0] == 0xF2 and blocks[0, 0, 1, 0] == 0xB3
    w = dequantize_gpt_oss(blocks, s)
    assert w.shape == (1, 64, 1)                                                # (E, K, rows)
    assert w[0, 0, 0] == 1.0 and w[0, 1, 0] == -6.0
    assert w[0, 32, 0] == 1.5 * 2.0 ** 127 <= BF16_MAX and w[0, 33, 0] == -1.5 * 2.0 ** 127
    c[0, 0, 34] = 0x4                                                          # 2 x 2^127: Inf
    assert dequantize_gpt_oss(pack_gpt_oss(s, c)[0], s)[0, 34, 0] == np.inf
    s[0, 0, 0] = 0xFF
    assert np.isnan(dequantize_gpt_oss(pack_gpt_oss(s, c)[0], s)[0, :32]).all()


@pytest.mark.clause("MX-8.8")
def test_equals_the_transformers_loader():
    torch = pytest.importorskip("torch")
    mx4 = pytest.importorskip("transformers.integrations.mxfp4")
    s, c = _ops()
    s[0, 0, 0], s[1, 2, 1] = 0xFE, 0x00
    blocks, _ = pack_gpt_oss(s, c)
    ref = mx4.convert_moe_packed_tensors(torch.from_numpy(blocks), torch.from_numpy(s),
                                         dtype=torch.bfloat16).float().numpy()
    assert np.array_equal(ref, dequantize_gpt_oss(blocks, s))


@pytest.mark.clause("MX-8.8")
def test_bad_arguments():
    s, c = _ops()
    with pytest.raises(ValueError, match="last axis"):
        pack_gpt_oss(s, c[..., :32])
    with pytest.raises(TypeError, match="uint8"):
        dequantize_gpt_oss(pack_gpt_oss(s, c)[0].astype(np.int16), s)
    with pytest.raises(ValueError, match="scales"):
        dequantize_gpt_oss(pack_gpt_oss(s, c)[0], s[:, :2])


@pytest.mark.clause("GV-4.2", "MX-8.8")
def test_committed_golden_second_formulation():
    """The committed gpt_oss_mxfp4.json decoded by hand: nibbles, the E2M1 table written out,
    2^(s - 127), bfloat16 overflow, transposed."""
    from torq_ref import golden
    docs = golden.read_tree(golden.committed_dir()).docs
    table = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]
    tests = docs["gpt_oss_mxfp4.json"]["testGroups"][0]["tests"]
    assert len(tests) == 3
    for t in tests:
        e, rows, k = t["experts"], t["rows"], t["k"]
        b = from_hex(t["blocks"], "uint8").reshape(e, rows, k // 32, 16)
        s = from_hex(t["scales"], "uint8").reshape(e, rows, k // 32)
        w = from_hex(t["w"], "float32").reshape(e, k, rows)
        for x in range(e):
            for r in range(rows):
                for j in range(k):
                    byte = int(b[x, r, j // 32, (j % 32) // 2])
                    code = byte & 0xF if j % 2 == 0 else byte >> 4
                    sc = int(s[x, r, j // 32])
                    v = table[code] * 2.0 ** (sc - 127) if sc != 0xFF else float("nan")
                    if abs(v) > float.fromhex("0x1.fep+127"):
                        v = float("inf") if v > 0 else float("-inf")
                    got = float(w[x, j, r])
                    assert (np.isnan(v) and np.isnan(got)) or (got == v and np.signbit(got) == np.signbit(v))
    assert "GptOssOverflow" in tests[1]["flags"] and np.isinf(from_hex(tests[1]["w"], "float32")).any()
