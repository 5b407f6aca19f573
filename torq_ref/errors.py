"""The base class of the errors a user's input causes (spec/CL.md CL-3.1).

A bad argument, a missing, misnamed or corrupt file, an unknown format, profile or kernel: every
package error class that reports such an input derives from :class:`UserError`, and the command
line (:func:`torq_ref.cli.main`, the one place) prints ``error: <message>`` and exits 2 on it. Any
other exception is a bug and keeps its traceback. This module imports nothing of the package: every
room may use it.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager


class UserError(Exception):
    """An input the user gave cannot be used; the message names it and what would work."""


@contextmanager
def argument(option: str, value=None):
    """Inside the block, a :class:`UserError` gets ``option`` (and ``value``) in front of its
    message, so that the command line names the argument that caused it (CL-3.2)."""
    try:
        yield
    except UserError as err:
        where = option if value is None else f"{option} {value}"
        raise type(err)(f"{where}: {err}") from err


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (CL-3.3)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n
