"""Step brevitas's MX E2M1 fake-quant (the adaptors.brevitas_fake_quant_mxfp4 module) through
one FLT_MAX block, submodule by submodule, to show where its all-NaN output comes from
(CONFORMANCE.md, brevitas row, ValueMismatch). Run from the repository root in the conformance venv:

    python benchmarks/conformance/trace_brevitas_nan.py

Line numbers in the printout are brevitas 0.13.4's.
"""
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.simplefilter("ignore")

import adaptors as A  # noqa: E402


def main():
    import torch
    from brevitas.core.quant.float import min_internal_scale
    from brevitas.utils.torch_utils import float_internal_scale

    x = np.array([[3.4028235e38, 1.0, -2.5, 6.0] + [0.5] * 28], dtype=np.float32)
    out = A.brevitas_fake_quant_mxfp4(x)
    print("adaptor output, first 4:", out[0, :4], " all NaN:", bool(np.isnan(out).all()))
    fq = A._BREVITAS["m"].act_quant.fused_activation_quant_proxy.tensor_quant   # FloatQuant
    s = fq.scaling_impl                                                         # RuntimeDynamicGroupStatsScaling
    rv = s.restrict_clamp_scaling.restrict_value_impl                           # PowerOfTwoRestrictValue
    mbw = fq.mantissa_bit_width_impl()
    t = torch.from_numpy(x.copy())

    def show(what, v):
        print(f"{what:<64} {v.flatten()[:4].tolist()}")

    with torch.no_grad():
        fmax = fq.float_scaling_impl(fq.exponent_bit_width_impl(), fq.compute_max_mantissa(mbw),
                                     fq.exponent_bias_impl())
        show("float.py:84 float_scaling_impl (E2M1 max)", fmax)
        thr = s.restrict_clamp_threshold(s.restrict_threshold_pre(fmax))
        show("runtime.py:257 threshold = 2**floor(log2 6)", thr)
        amax = s.scaling_stats_impl(s.input_view_impl(t))
        show("runtime.py:258 AbsMax", amax)
        amax = s.clamp_scaling(amax)
        show("runtime.py:260 clamp_min 1e-10", amax)
        lg = s.restrict_scaling_pre(amax)
        show("runtime.py:262 -> misc.py:111 torch.log2 (float32)", lg)
        print(f"{'   (float64 log2 of FLT_MAX)':<64} {np.log2(np.float64(np.finfo(np.float32).max))}")
        fl = rv.float_to_int_impl(lg)
        show("runtime.py:264 -> restrict_val.py:208 FloorSte", fl)
        p2 = rv.power_of_two(fl)
        show("restrict_val.py:209 -> misc.py:92 2.0 ** x   <- first Inf", p2)
        p2 = s.restrict_clamp_scaling.clamp_ste(p2)
        show("restrict_val.py:58 clamp_min 1e-10", p2)
        scale = s.restrict_clamp_scale_threshold(p2 / thr)
        show("runtime.py:264 / threshold, :265 -> scale", scale)
        sx = fq.input_view_impl(t) / scale
        show("float.py:69 scaled_x = x / scale", sx)
        isc = float_internal_scale(sx, mbw, min_internal_scale(fq.exponent_bias_impl(), mbw), fq.eps)
        q = isc * fq.float_to_int_impl(sx / isc)
        show("float.py:72-74 val_fp_quant", q)
        q, *_ = fq.float_clamp_impl(q, fq.exponent_bit_width_impl(), fq.compute_max_mantissa(mbw),
                                    fq.exponent_bias_impl())
        show("float.py:97 float_clamp_impl", q)
        show("float.py:79 dequantize y * scale = 0 * Inf  <- first NaN", q * scale)
    u, k = np.finfo(np.float32).max, 0
    while torch.log2(torch.tensor(u)).item() == 128.0:
        u, k = np.nextafter(u, np.float32(0)), k + 1
    print(f"float32 amax values whose torch.log2 rounds to 128.0 (so the block is all NaN): the top {k}, "
          f"[{float(np.nextafter(u, np.float32(np.inf))):.8e}, FLT_MAX]")


if __name__ == "__main__":
    main()
