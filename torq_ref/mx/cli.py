"""CLI subcommands of the codec: ``demo`` and ``bench codec`` (see README and benchmarks/codec.md)."""
from __future__ import annotations

import time


def register(sub) -> None:
    """``demo``."""
    from .formats import FORMATS, SCALE_RULES

    p = sub.add_parser("demo", help="quantize a small example block to MX and show every step")
    p.add_argument("--fmt", default="e2m1", choices=FORMATS, help="element format (default e2m1)")
    p.add_argument("--scale-rule", default="floor", choices=SCALE_RULES, help="E8M0 scale rule (default floor)")
    p.add_argument("values", nargs="*", type=float, help="values of one block (padded with zeros to 32)")
    p.set_defaults(func=_demo)


def register_bench(sub) -> None:
    """``bench codec``."""
    from torq_ref.errors import positive_int

    b = sub.add_parser("codec", help="time MXFP4 quantize / encode against torchao and ml_dtypes")
    b.add_argument("--rows", type=positive_int, default=4096)
    b.add_argument("--cols", type=positive_int, default=4096)
    b.add_argument("--repeat", type=positive_int, default=5)
    b.set_defaults(func=_bench)


def _demo(args) -> int:
    import numpy as np

    from torq_ref import mx

    vals = args.values or [5.0, -0.3, 2.6, 0.25, 0.75, -6.5, 1e-3, 3.5]
    x = np.zeros(32, np.float32)
    x[: len(vals)] = vals[:32]
    t = mx.quantize(x, args.fmt, scale_rule=args.scale_rule, pad=False)
    s = int(t.scales[0])
    print(f"format {t.fmt}, block 32, scale rule {t.scale_rule}")
    print(f"amax {np.max(np.abs(x)):g} -> E8M0 scale code 0x{s:02X} = 2^{s - 127}")
    deq = mx.dequantize(t)
    print(f"{'input':>14} {'x / scale':>12} {'code':>6} {'value':>12}")
    for i in range(len(vals)):
        print(f"{x[i]:>14.7g} {np.ldexp(np.float64(x[i]), 127 - s):>12.6g}   0x{t.codes[i]:X} {deq[i]:>12.6g}")
    if t.fmt == "e2m1":
        packed = mx.pack_fp4(t.codes)
        print("packed bytes (element 2i low nibble):", " ".join(f"{b:02X}" for b in packed[: (len(vals) + 1) // 2]))
    return 0


def _best(fn, repeat: int) -> float:
    fn()  # warm up (JIT compile, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _bench(args) -> int:
    import numpy as np

    from torq_ref import mx
    from torq_ref.mx import _numba_kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
    rows = []
    t_copy = _best(lambda: x.copy(), args.repeat)
    rows.append(("numpy copy of the input", t_copy, None))
    backend = "numba" if _numba_kernels.available() else "numpy"
    t_q = _best(lambda: mx.quantize(x, backend=backend), args.repeat)
    rows.append((f"torq_ref quantize MXFP4 ({backend})", t_q, None))
    t_ref = _best(lambda: mx.quantize(x[: max(1, args.rows // 16)], backend="numpy"), 1) * 16
    rows.append(("torq_ref quantize MXFP4 (numpy reference, extrapolated x16)", t_ref, None))
    # the activation fake quantizer of the pipeline, FLOOR against the MSE rule (MX-4.8)
    t_fq_floor = _best(lambda: mx.quantize_dequantize(x, backend=backend), args.repeat)
    t_fq_mse = _best(lambda: mx.quantize_dequantize(x, scale_rule="mse", backend=backend), args.repeat)
    rows.append((f"torq_ref fake-quant float32 FLOOR ({backend})", t_fq_floor, None))
    rows.append((f"torq_ref fake-quant float32 MSE ({backend}), mse / floor", t_fq_mse, t_fq_mse / t_fq_floor))
    x64 = x.astype(np.float64)      # the folded W4A4 weights of the TORQ pipeline are float64
    t_fq64 = _best(lambda: mx.quantize_dequantize(x64, backend=backend), args.repeat)
    t_fq64_ref = _best(lambda: mx.quantize_dequantize(x64[: max(1, args.rows // 16)], backend="numpy"), 1) * 16
    rows.append((f"torq_ref fake-quant float64 ({backend})", t_fq64, None))
    rows.append(("torq_ref fake-quant float64 (numpy reference, x16)", t_fq64_ref, t_fq64_ref / t_fq64))
    try:
        import torch
        from torchao.prototype.mx_formats.mx_tensor import ScaleCalculationMode, to_mx

        xt = torch.from_numpy(x)
        t_ao = _best(lambda: to_mx(xt, torch.float4_e2m1fn_x2, 32, ScaleCalculationMode.FLOOR), args.repeat)
        rows.append(("torchao to_mx FLOOR (CPU eager)", t_ao, t_ao / t_q))
    except ImportError as err:
        print(f"(torchao not installed: {err}; install the crosscheck extra)")
    t_enc = _best(lambda: mx.encode(x, "e2m1"), args.repeat)
    rows.append((f"torq_ref encode e2m1 ({backend})", t_enc, None))
    try:
        import ml_dtypes

        t_ml = _best(lambda: x.astype(ml_dtypes.float4_e2m1fn), args.repeat)
        rows.append(("ml_dtypes astype(float4_e2m1fn)", t_ml, t_ml / t_enc))
    except ImportError:
        print("(ml_dtypes not installed)")
    print(f"{args.rows} x {args.cols} float32, best of {args.repeat}")
    print(f"{'what':<62} {'seconds':>9} {'them / us':>10}")
    for name, t, ratio in rows:
        print(f"{name:<62} {t:>9.4f} {'' if ratio is None else f'{ratio:>9.1f}x':>10}")
    print(f"quantize / copy = {t_q / t_copy:.1f}x")
    return 0
