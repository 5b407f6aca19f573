"""pytest plugin: run the conformance suite against a user's kernel (spec/CF.md CF-1.4).

    pytest --pyargs torq_ref.conformance -p torq_ref.conformance.plugin \
        --kernel mypkg.kernels:quantize --kind quantize --profile nvidia

(``-p`` may be dropped where the plugin is loaded another way, e.g. a ``pytest11`` entry point.)
"""
from __future__ import annotations

import importlib


def pytest_addoption(parser):
    g = parser.getgroup("torq-ref conformance")
    g.addoption("--kernel", default=None, help="MODULE:FUNCTION of the kernel under test")
    g.addoption("--kind", default="quantize",
                help="encode|quantize|dequantize|pack|swizzle|dot_scaled|fake-quant|gguf-block")
    g.addoption("--profile", default="ocp", help="ocp|nvidia|torchao|torchao-rceil|ceil|even|any-rule")
    g.addoption("--ct-level", default="default", help="quick|default|thorough")
    g.addoption("--fmt", default="e2m1", help="element format (e2m1, e4m3, ..., nvfp4)")
    g.addoption("--accumulate-u", type=float, default=None,
                help="dot_scaled accumulator unit roundoff (default 2^-24; CF-3.6)")


def load_kernel(spec: str):
    """'pkg.mod:fn' (or 'pkg.mod:obj.attr') -> the callable."""
    if ":" not in spec:
        raise ValueError(f"--kernel must be MODULE:FUNCTION, got {spec!r}")
    mod, _, attr = spec.partition(":")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj
