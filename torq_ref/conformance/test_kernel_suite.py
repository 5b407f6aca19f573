"""The conformance suite as pytest tests, one per vector source (spec/CF.md CF-1.4).

Collected by ``pytest --pyargs torq_ref.conformance --kernel MODULE:FUNCTION --kind KIND``;
skipped when no ``--kernel`` is given.
"""
from __future__ import annotations

import pytest


def _opt(config, name, default=None):
    try:
        return config.getoption(name)
    except ValueError:
        return default


@pytest.fixture(scope="module")
def report(request):
    from torq_ref.conformance import check
    from torq_ref.conformance.plugin import load_kernel
    from torq_ref.conformance.profiles import with_accumulate_u

    spec = _opt(request.config, "--kernel")
    if not spec:
        pytest.skip("no --kernel MODULE:FUNCTION given (see torq_ref.conformance.plugin)")
    return check(_opt(request.config, "--kind", "quantize"), load_kernel(spec),
                 profile=with_accumulate_u(_opt(request.config, "--profile", "ocp"),
                                           _opt(request.config, "--accumulate-u")),
                 level=_opt(request.config, "--ct-level", "default"),
                 fmt=_opt(request.config, "--fmt", "e2m1"), max_failures=5)


SOURCES = ["mx_encode", "mx_quantize", "nvfp4_quantize", "mx_dequantize", "fp4_pack",
           "scale_swizzle", "mx_dot_scaled", "gguf_mxfp4", "hadamard", "rotate_quantize",
           "rotation_builders", "bulk", "generated"]


@pytest.mark.parametrize("source", SOURCES)
def test_vectors(report, source):
    mine = [r for r in report.results
            if r.source.startswith(source + ("/" if source in ("bulk", "generated") else "."))]
    if not mine:
        pytest.skip(f"no {source} vectors for kind {report.kind}")
    failed = [r for r in mine if r.status == "fail"]
    if failed:
        sub = type(report)(report.kind, report.profile, report.level, report.fmt, mine, 5)
        pytest.fail(str(sub), pytrace=False)
