"""The package's import graph (spec/CL.md section 4): no cycle between modules, none between rooms,
and no import from a lower room to a higher one. Every module of torq_ref is parsed with ``ast``,
function-local imports included; nothing is imported."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "torq_ref"

#: the rooms of the package, lowest first (CL-4.1): a module may import its own room and the rooms
#: before it, never one after it. ``torq_ref`` is the package's __init__ (its version); the other
#: names are the subpackages and top-level modules of torq_ref.
ROOMS = ("torq_ref", "errors", "blas_threads", "mx", "quant", "rotations", "golden", "conformance",
         "model", "evaluate", "torq", "experiments", "torch", "selftest", "cli", "__main__")


def modules(pkg: Path = PKG) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file below ``pkg`` (a package is its __init__)."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = ("torq_ref",) + path.relative_to(pkg).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The torq_ref modules that module ``name`` imports anywhere in its body (CL-4.1): for
    ``from P import x`` the module P.x when it is one, else P."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                found.add(f"{target}.{a.name}" if f"{target}.{a.name}" in known else target)
    return {m for m in found if m == "torq_ref" or m.startswith("torq_ref.")} - {name}


def graph(pkg: Path = PKG) -> dict[str, set[str]]:
    known = modules(pkg)
    return {name: imports(name, path, known) for name, path in known.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each a cycle's nodes."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@pytest.mark.clause("CL-4.1")
def test_the_parser_sees_function_local_and_relative_imports(tmp_path):
    pkg = tmp_path / "torq_ref"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from .x import f\n")
    (pkg / "a" / "x.py").write_text("def f():\n    from torq_ref.b import g\n    from .. import b\n")
    (pkg / "b.py").write_text("import numpy\ndef g():\n    from .a import x\n")
    got = graph(pkg)
    assert got["torq_ref.a"] == {"torq_ref.a.x"}
    assert got["torq_ref.a.x"] == {"torq_ref.b"}
    assert got["torq_ref.b"] == {"torq_ref.a.x"}
    assert cycles(got) == [["torq_ref.a.x", "torq_ref.b"]]


@pytest.mark.clause("CL-4.1")
def test_no_module_cycle():
    found = cycles(graph())
    assert not found, f"import cycles between modules: {found}"


@pytest.mark.clause("CL-4.1")
def test_every_room_is_placed_and_imports_only_downward():
    edges = graph()
    unplaced = sorted({room(m) for m in edges} - set(ROOMS))
    assert not unplaced, f"rooms missing from ROOMS (and spec/CL.md CL-4.1): {unplaced}"
    upward = sorted(f"{m} -> {t}" for m, ts in edges.items() for t in ts
                    if ROOMS.index(room(t)) > ROOMS.index(room(m)))
    assert not upward, "imports from a lower room to a higher one:\n" + "\n".join(upward)
    rooms: dict[str, set[str]] = {}
    for m, ts in edges.items():
        rooms.setdefault(room(m), set()).update(room(t) for t in ts if room(t) != room(m))
    assert not cycles(rooms), f"import cycles between rooms: {cycles(rooms)}"
