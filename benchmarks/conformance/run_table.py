"""Run real implementations through the harness and print CONFORMANCE.md rows.

    TRITON_INTERPRET=1 PYTHONPATH=.:benchmarks/conformance python benchmarks/conformance/run_table.py [--gpu] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
import traceback

import adaptors as A

from torq_ref.conformance import check

CPU_ROWS = [
    ("ml_dtypes 0.6 astype(float4_e2m1fn)", "encode", A.ml_dtypes_encode, "ocp", "e2m1"),
    ("torchao 0.18 to_mx FLOOR (fp4)", "quantize", A.torchao_quantize_floor, "torchao", "e2m1"),
    ("torchao 0.18 to_mx RCEIL (fp4)", "quantize", A.torchao_quantize_rceil, "torchao-rceil", "e2m1"),
    ("torchao 0.18 to_mx FLOOR (fp8 e4m3)", "quantize", A.torchao_quantize_mxfp8_floor, "torchao", "e4m3"),
    ("torchao 0.18 pack_uint4", "pack", A.torchao_pack, "ocp", "e2m1"),
    ("torchao 0.18 to_blocked", "swizzle", A.torchao_swizzle, "ocp", "e2m1"),
    ("JAX scaled_matmul quantize mxfp8 (e4m3)", "quantize", A.jax_quantize_mxfp8, "nvidia", "e4m3"),
    ("JAX quantize, mxfp8 mode with e2m1 data", "quantize", A.jax_quantize_mxfp4, "nvidia", "e2m1"),
    ("JAX scaled_matmul quantize nvfp4", "quantize", A.jax_quantize_nvfp4, "ocp", "nvfp4"),
    ("Triton tl.dot_scaled e2m1 x e2m1", "dot_scaled", A.triton_dot_scaled, "ocp", "e2m1"),
]


def row(name, kind, fn, profile, fmt, device):
    try:
        rep = check(kind, fn, profile=profile, fmt=fmt, max_failures=3)
    except Exception as err:  # noqa: BLE001
        return f"| {name} | {device} | {kind} {fmt} | {profile} | - | - | - | could not run: {type(err).__name__}: {str(err)[:160]} |", None
    c = rep.counts
    bad = ", ".join(f"{cl} {v['fail']}" for cl, v in rep.per_clause.items() if v["fail"])
    acc = ", ".join(f"{f} {v['acceptable']}" for f, v in rep.per_flag.items() if v["acceptable"])
    kd = ", ".join(f"{k} {v}" for k, v in rep.known_defects.items())
    note = "; ".join(x for x in (f"fail by clause: {bad}" if bad else "", f"acceptable: {acc}" if acc else "",
                                 f"matches {kd}" if kd else "") if x)
    return (f"| {name} | {device} | {kind} {fmt} | {profile} | {c['pass']} | {c['acceptable']} | "
            f"{c['fail']} | {note or 'all pass'} |"), rep


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
        line, rep = row(name, kind, fn, prof, fmt, args.device)
        print(line, flush=True)
        lines.append(line)
        if rep is not None and not rep.passed:
            details.append(f"## {name}\n\n```\n{rep}\n```\n")
    text = "\n".join(lines) + "\n"
    if args.out:
        open(args.out, "w").write(text)
    if args.details:
        open(args.details, "w").write("\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
