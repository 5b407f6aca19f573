"""Run real implementations through the harness and print CONFORMANCE.md rows.

    TRITON_INTERPRET=1 PYTHONPATH=.:benchmarks/conformance [MICROXCALING_PATH=DIR] \
        python benchmarks/conformance/run_table.py [--out FILE] [--details FILE] [--only NAMES]

A row whose library is missing says so ("could not run") and the others go on (CONFORMANCE.md
says how to install them).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

import adaptors as A
import field_adaptors as F

from torq_ref.conformance import check

CPU_ROWS = [
    ("ml_dtypes astype(float4_e2m1fn)", "encode", A.ml_dtypes_encode, "ocp", "e2m1"),
    ("torchao to_mx FLOOR (fp4)", "quantize", A.torchao_quantize_floor, "torchao", "e2m1"),
    ("torchao to_mx RCEIL (fp4)", "quantize", A.torchao_quantize_rceil, "torchao-rceil", "e2m1"),
    ("torchao to_mx FLOOR (fp8 e4m3)", "quantize", A.torchao_quantize_mxfp8_floor, "torchao", "e4m3"),
    ("torchao pack_uint4", "pack", A.torchao_pack, "ocp", "e2m1"),
    ("torchao to_blocked", "swizzle", A.torchao_swizzle, "ocp", "e2m1"),
    ("JAX scaled_matmul quantize mxfp8 (e4m3)", "quantize", A.jax_quantize_mxfp8, "nvidia", "e4m3"),
    ("JAX quantize, mxfp8 mode with e2m1 data", "quantize", A.jax_quantize_mxfp4, "nvidia", "e2m1"),
    ("JAX scaled_matmul quantize nvfp4", "quantize", A.jax_quantize_nvfp4, "ocp", "nvfp4"),
    ("Triton tl.dot_scaled e2m1 x e2m1 (interpreter)", "dot_scaled", A.triton_dot_scaled, "ocp", "e2m1"),
    ("gguf-py quants.quantize MXFP4", "gguf-block", A.gguf_block, "ocp", "e2m1"),
    ("gguf-py quants.dequantize MXFP4", "dequantize", A.gguf_dequantize, "ocp", "e2m1"),
    ("PyTorch .to(float8_e4m3fn)", "encode", A.torch_encode_e4m3, "ocp", "e4m3"),
    ("PyTorch .to(float8_e5m2)", "encode", A.torch_encode_e5m2, "ocp", "e5m2"),
    ("transformers mxfp4 convert_moe_packed_tensors (float32)", "dequantize",
     A.transformers_dequantize, "ocp", "e2m1"),
    ("ModelOpt MXFP4QTensor.quantize", "quantize", A.modelopt_quantize_mxfp4, "nvidia", "e2m1"),
    ("ModelOpt NVFP4QTensor.quantize", "quantize", A.modelopt_quantize_nvfp4, "ocp", "nvfp4"),
    ("compressed-tensors MXFP4 fake_quantize", "fake-quant", A.compressed_tensors_fake_quant_mxfp4,
     "even", "e2m1"),
    ("compressed-tensors NVFP4 (reciprocal global_scale)", "quantize",
     A.compressed_tensors_quantize_nvfp4, "nvfp4-reciprocal", "nvfp4"),
    ("brevitas QuantIdentity, MX act quantizer at E2M1", "fake-quant", A.brevitas_fake_quant_mxfp4,
     "ocp", "e2m1"),
    ("microxcaling _quantize_mx fp4 round=nearest", "fake-quant", A.microxcaling_fake_quant_nearest,
     "ocp", "e2m1"),
    ("microxcaling _quantize_mx fp4 round=even", "fake-quant", A.microxcaling_fake_quant_even,
     "ocp", "e2m1"),
    # added implementations (field_adaptors.py; CONFORMANCE.md "More implementations")
    ("MLX quantize mode=mxfp4", "quantize", F.mlx_quantize_mxfp4, "nvidia", "e2m1"),
    ("MLX quantize mode=mxfp8", "quantize", F.mlx_quantize_mxfp8, "nvidia", "e4m3"),
    ("MLX quantize mode=nvfp4 (global_scale = 2688 / g_enc)", "quantize",
     F.mlx_quantize_nvfp4_reciprocal, "nvfp4-reciprocal", "nvfp4"),
    ("MLX dequantize mode=mxfp4 (float32)", "dequantize", F.mlx_dequantize_mxfp4, "ocp", "e2m1"),
    ("ONNX reference QuantizeLinear FLOAT4E2M1 (scale 1)", "encode", F.onnx_ref_encode_e2m1, "ocp", "e2m1"),
    ("ONNX reference QuantizeLinear FLOAT8E4M3FN (scale 1)", "encode", F.onnx_ref_encode_e4m3, "ocp", "e4m3"),
    ("ONNX reference DequantizeLinear FLOAT4E2M1 x FLOAT8E8M0, block_size 32", "dequantize",
     F.onnx_ref_dequantize_e8m0, "ocp", "e2m1"),
    ("ONNX reference DequantizeLinear, no output_dtype (output FLOAT8E8M0)", "dequantize",
     F.onnx_ref_dequantize_e8m0_default_dtype, "ocp", "e2m1"),
    ("onnxruntime QuantizeLinear FLOAT8E4M3FN (scale 1)", "encode", F.ort_encode_e4m3, "ocp", "e4m3"),
    ("onnxruntime QuantizeLinear FLOAT8E5M2 (scale 1)", "encode", F.ort_encode_e5m2, "ocp", "e5m2"),
    ("AMD Quark fake_quantize_mx fp4 floor", "fake-quant", F.quark_fake_quant_floor, "ocp", "e2m1"),
    ("AMD Quark fake_quantize_mx fp4 even", "fake-quant", F.quark_fake_quant_even, "even", "e2m1"),
]

#: scalar float32 -> E8M0 casts: rows of the e8m0-cast kind, run when the harness has that kind
E8M0_CAST_ROWS = [
    ("PyTorch .to(float8_e8m0fnu)", F.torch_e8m0_cast),
    ("ml_dtypes astype(float8_e8m0fnu)", F.ml_dtypes_e8m0_cast),
    ("onnxruntime Cast to FLOAT8E8M0", F.ort_e8m0_cast),
    ("ONNX reference Cast to FLOAT8E8M0", F.onnx_ref_e8m0_cast),
]

#: distributions whose version the table prints (microxcaling is a checkout: MICROXCALING_PATH)
LIBRARIES = ("ml_dtypes", "torch", "torchao", "jax", "jaxlib", "triton", "gguf", "transformers",
             "nvidia-modelopt", "compressed-tensors", "brevitas", "mlx", "onnx", "onnxruntime",
             "amd-quark", "numpy")


#: row name prefix -> the distribution whose version the row carries
ROW_LIBRARY = {"ml_dtypes": "ml_dtypes", "torchao": "torchao", "JAX": "jax", "Triton": "triton",
               "gguf-py": "gguf", "PyTorch": "torch", "transformers": "transformers",
               "ModelOpt": "nvidia-modelopt", "compressed-tensors": "compressed-tensors",
               "brevitas": "brevitas", "MLX": "mlx", "ONNX reference": "onnx",
               "onnxruntime": "onnxruntime", "AMD Quark": "amd-quark"}


def row_version(name: str) -> str:
    from importlib import metadata
    if name.startswith("microxcaling"):
        return "checkout " + os.environ.get("MICROXCALING_COMMIT", "7bc4195")
    lib = next((v for k, v in ROW_LIBRARY.items() if name.startswith(k)), None)
    try:
        return f"{lib} {metadata.version(lib)}" if lib else "?"
    except metadata.PackageNotFoundError:
        return f"{lib} not installed"


def versions() -> str:
    from importlib import metadata
    out = []
    for lib in LIBRARIES:
        try:
            out.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            out.append(f"{lib} (not installed)")
    return ", ".join(out)


def row(name, kind, fn, profile, fmt, device):
    # the e8m0-cast kind maps float32 to E8M0 bytes: no element format to pass (CF-3.12)
    kw = {} if kind == "e8m0-cast" else {"fmt": fmt}
    try:
        rep = check(kind, fn, profile=profile, max_failures=3, **kw)
    except Exception as err:  # noqa: BLE001
        return f"| {name} | {device} | {kind} {fmt} | {profile} | - | - | - | could not run: {type(err).__name__}: {str(err)[:160]} |", None
    c = rep.counts
    causes = rep.per_cause
    bad = ", ".join(f"{k} {v['fail']} ({v['clause']})" for k, v in causes.items() if v["fail"])
    acc_c = ", ".join(f"{k} {v['acceptable']}" for k, v in causes.items() if v["acceptable"])
    acc = ", ".join(f"{f} {v['acceptable']}" for f, v in rep.per_flag.items()
                    if v["acceptable"] and f in ("NanElementCode", "InfScaleSatfinite"))
    kd = ", ".join(f"{k} {v}" for k, v in rep.known_defects.items())
    note = "; ".join(x for x in (f"fail by cause: {bad}" if bad else "",
                                 f"acceptable: {', '.join(y for y in (acc, acc_c) if y)}" if acc or acc_c else "",
                                 f"matches {kd}" if kd else "") if x)
    return (f"| {name} | {device} | {kind} {fmt} | {profile} | {c['pass']} | {c['acceptable']} | "
            f"{c['fail']} | {note or 'all pass'} |"), rep


def first_per_cause(rep) -> str:
    """The summary and the first failing case of each cause, with its reproduction."""
    seen, parts = set(), [rep.summary()]
    for r in rep.failures:
        key = (r.cause, r.rule)
        if key in seen:
            continue
        seen.add(key)
        parts.append(f"\n--- {r.cause}{'[' + r.rule + ']' if r.rule else ''} first at {r.source} "
                     f"breaks {r.clause}: {r.detail}\n{r.repro}")
    return "\n".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="CPU")
    ap.add_argument("--only", default=None, help="substring filter on row names")
    ap.add_argument("--out", default=None)
    ap.add_argument("--details", default=None, help="write failing-case reproductions here")
    args = ap.parse_args(argv)
    lines = ["| implementation | device | kind | profile | pass | acceptable | fail | notes |",
             "|---|---|---|---|---|---|---|---|"]
    details = []
    for name, kind, fn, prof, fmt in CPU_ROWS:
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        name = f"{name} [{row_version(name)}]"
        line, rep = row(name, kind, fn, prof, fmt, args.device)
        print(line, flush=True)
        lines.append(line)
        if rep is not None and not rep.passed:
            details.append(f"## {name}\n\n```\n{first_per_cause(rep)}\n```\n")
    from torq_ref.conformance import KINDS
    for name, fn in E8M0_CAST_ROWS:
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        name = f"{name} [{row_version(name)}]"
        if "e8m0-cast" not in KINDS:
            print(f"{name}: skipped, this harness has no e8m0-cast kind", flush=True)
            continue
        line, rep = row(name, "e8m0-cast", fn, "ocp", "e8m0", args.device)
        print(line, flush=True)
        lines.append(line)
    text = "\n".join(lines) + "\n\nVersions: " + versions() + "\n"
    print("Versions:", versions())
    if args.out:
        open(args.out, "w").write(text)
    if args.details:
        open(args.details, "w").write("\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
