"""Run the real rotation implementations of rotation_adaptors.py through the rotation kinds and
print one line per (implementation, kind, profile): verdict, counts and causes (CONFORMANCE.md,
"Rotation kernels"). ``python benchmarks/conformance/rotation_table.py [--json]``."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (adaptor, kind, profile, level): dense-matrix adaptors run at the quick level (blocks <= 256;
#: a dense 2^14 Hadamard matrix is 1 GiB)
ROWS = [
    ("scipy_hadamard", "hadamard", "ocp", "quick"),
    ("scipy_hadamard_unnormalized", "hadamard", "ocp", "quick"),
    ("scipy_hadamard_unnormalized", "hadamard", "ocp+unnormalized", "quick"),
    ("torchao_spinquant_hadamard", "hadamard", "ocp", "default"),
    ("compressed_tensors_hadamard", "hadamard", "ocp", "quick"),
    ("hadamard_transform_pypi", "hadamard", "ocp", "default"),
    ("hadamard_transform_pypi_inplace", "hadamard", "ocp", "default"),
    ("torch_matmul_torchao_mx", "rotate-quantize", "ocp", "default"),
]


def main(argv=None) -> int:
    import rotation_adaptors as A

    from torq_ref.conformance import check

    as_json = "--json" in (argv or sys.argv[1:])
    out = []
    for name, kind, prof, level in ROWS:
        try:
            fn = getattr(A, name)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                rep = check(kind, fn, profile=prof, level=level)
        except ImportError as err:
            out.append({"impl": name, "kind": kind, "profile": prof, "skipped": str(err)})
            continue
        out.append({"impl": name, "kind": kind, "profile": prof, "level": level,
                    "passed": rep.passed, "counts": rep.counts,
                    "causes": {c: v["fail"] or v["acceptable"] for c, v in rep.per_cause.items()}})
    if as_json:
        print(json.dumps(out, indent=1))
    else:
        for r in out:
            if "skipped" in r:
                print(f"{r['impl']:34s} {r['kind']:16s} skipped: {r['skipped']}")
                continue
            c = r["counts"]
            print(f"{r['impl']:34s} {r['kind']:16s} {r['profile']:18s} {r['level']:8s} "
                  f"{'PASS' if r['passed'] else 'FAIL'} {c['pass']}/{c['acceptable']}/{c['fail']} "
                  f"{r['causes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
