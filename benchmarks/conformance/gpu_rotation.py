"""GPU rotation kernels through the rotation kinds (spec/CF.md section 5), for a machine with
CUDA: fast-hadamard-transform (Dao-AILab), torchao's CUDA hadamard_transform op, hadamard-transform
on CUDA, and a composed rotate-then-quantize (torch.matmul on CUDA, TF32 off and on, then torchao
to_mx FLOOR). A QuTLASS-style fused Hadamard + MXFP4 kernel is tried when the `qutlass` module
exposes one (its API is probed, not assumed). Prints one line per kernel; exit 0 always (the lines
are the result). Run by gpu_rotation.sh."""
from __future__ import annotations

import math
import sys
import traceback

import numpy as np


def _cuda(x):
    import torch
    return torch.from_numpy(np.ascontiguousarray(x)).cuda()


def fht_dao(x, block):
    from fast_hadamard_transform import hadamard_transform
    y = hadamard_transform(_cuda(x.reshape(-1, block)), scale=1.0 / math.sqrt(block))
    return y.float().cpu().numpy().reshape(x.shape)


def torchao_cuda_op(x, block):
    import torch
    import torchao  # noqa: F401 - registers torch.ops.torchao
    y = torch.ops.torchao.hadamard_transform.default(_cuda(x.reshape(-1, block))) / math.sqrt(block)
    return y.float().cpu().numpy().reshape(x.shape)


def hadamard_transform_cuda(x, block):
    from hadamard_transform import hadamard_transform
    return hadamard_transform(_cuda(x.reshape(-1, block))).cpu().numpy().reshape(x.shape)


def _to_mx_codes(y, rows, n):
    import torch
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import to_mx
    scale, data = to_mx(y.contiguous(), torch.float4_e2m1fn_x2, 32, ScaleCalculationMode.FLOOR)
    s = scale.view(torch.uint8).cpu().numpy().reshape(rows, -1)
    packed = data.view(torch.uint8).cpu().numpy().reshape(rows, -1)
    c = np.empty((rows, n), np.uint8)
    c[:, 0::2] = packed & 0xF
    c[:, 1::2] = packed >> 4
    return c, s


def matmul_mx(tf32):
    def fn(x, R):
        import torch
        torch.backends.cuda.matmul.allow_tf32 = tf32
        b = R.shape[0]
        y = (_cuda(x.reshape(x.shape[0], -1, b)) @ _cuda(R)).reshape(x.shape)
        return _to_mx_codes(y, x.shape[0], x.shape[1])
    fn.__name__ = f"torch_cuda_matmul_tf32_{tf32}_torchao_mx"
    return fn


KERNELS = [("fast-hadamard-transform", "hadamard", fht_dao),
           ("torchao CUDA hadamard_transform", "hadamard", torchao_cuda_op),
           ("hadamard-transform on CUDA", "hadamard", hadamard_transform_cuda),
           ("torch.matmul CUDA (TF32 off) + torchao to_mx", "rotate-quantize", matmul_mx(False)),
           ("torch.matmul CUDA (TF32 on) + torchao to_mx", "rotate-quantize", matmul_mx(True))]


def main() -> int:
    from torq_ref.conformance import check
    try:
        import qutlass  # noqa: F401
        print("qutlass importable; exports:", [n for n in dir(qutlass) if not n.startswith("_")])
    except ImportError as err:
        print("qutlass: not importable:", err)
    for name, kind, fn in KERNELS:
        try:                      # a missing library or op: reported as such, not as a verdict
            x0 = np.ones((1, 32), np.float32)
            fn(x0, 16) if kind == "hadamard" else fn(x0, np.eye(32, dtype=np.float32))
            with np.errstate(all="ignore"):
                rep = check(kind, fn)
        except Exception as err:  # noqa: BLE001 - a missing library or op is reported, not fatal
            print(f"{name:48s} {kind:16s} ERROR {type(err).__name__}: {err}")
            traceback.print_exc(limit=2, file=sys.stdout)
            continue
        c = rep.counts
        causes = {k: v["fail"] or v["acceptable"] for k, v in rep.per_cause.items()}
        print(f"{name:48s} {kind:16s} {'PASS' if rep.passed else 'FAIL'} "
              f"{c['pass']}/{c['acceptable']}/{c['fail']} {causes}")
        for r in rep.failures[:2]:
            print(f"    {r.source} {r.cause}[{r.rule}]: {r.detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
