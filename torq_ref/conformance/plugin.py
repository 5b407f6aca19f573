"""pytest plugin: run the conformance suite against a user's kernel (spec/CF.md CF-1.4).

    pytest --pyargs torq_ref.conformance -p torq_ref.conformance.plugin \
        --kernel mypkg.kernels:quantize --kind quantize --profile nvidia

(``-p`` may be dropped where the plugin is loaded another way, e.g. a ``pytest11`` entry point.)
"""
from __future__ import annotations

import importlib

from torq_ref.errors import UserError


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


class KernelLoadError(UserError, ValueError):
    """``--kernel MODULE:FUNCTION`` names no module, or no callable in it (CF-1.3)."""


def load_kernel(spec: str):
    """'pkg.mod:fn' (or 'pkg.mod:obj.attr') -> the callable. A module that does not exist or an
    attribute it lacks raise KernelLoadError naming it; an error raised while the module itself
    is imported (a bug in it, or a package it needs) keeps its own traceback."""
    if ":" not in spec:
        raise KernelLoadError(f"--kernel must be MODULE:FUNCTION, got {spec!r}")
    mod, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(mod)
    except ModuleNotFoundError as err:
        if err.name is None or not (mod == err.name or mod.startswith(err.name + ".")):
            raise                                   # the module exists; something it imports does not
        raise KernelLoadError(f"--kernel {spec}: no module named {err.name!r}") from None
    path = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise KernelLoadError(f"--kernel {spec}: {path} has no attribute {part!r}")
        obj, path = getattr(obj, part), f"{path}.{part}"
    if not callable(obj):
        raise KernelLoadError(f"--kernel {spec}: {path} is not callable")
    return obj
