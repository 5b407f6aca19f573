"""Golden vectors for MX codecs: generation, files, reading (spec/GV.md).

    vs = generate(level="default", seed=DEFAULT_SEED)   # in memory, expected outputs from torq_ref.mx
    write_tree(vs, "golden/")                           # JSON + bulk safetensors + MANIFEST.json
    vs = read_tree("golden/")                           # verify hashes, load

Case generation follows Berkeley TestFloat (cases.py), the file layout Project Wycheproof
(JSON with a schema, a notes table of flags, results valid / acceptable / invalid).

Clauses: GV-1.1 the files of ``golden/`` and GV-1.2 ``MANIFEST.json`` (written by ``io.serialize``),
GV-3.1 / GV-3.2 inputs (``cases.py``), GV-4.1 expected outputs (``build.py``), GV-5.1 the command
(``cli.py``), GV-6.1 reading (``io.read_tree``).
"""
from __future__ import annotations

from pathlib import Path

from .cases import LEVELS, check_level
from .flags import FLAGS
from .io import GoldenFormatError, VectorSet, read_tree, validate_doc, verify_manifest, write_tree


def generate(level: str = "default", seed: int | None = None) -> VectorSet:
    """Build every vector in memory (deterministic in level and seed)."""
    from .build import DEFAULT_SEED, GENERATOR_VERSION, bulk_files, json_docs

    check_level(level)
    seed = DEFAULT_SEED if seed is None else int(seed)
    from .rotation_cases import rotation_docs

    docs, bulk = json_docs(level, seed), bulk_files(level, seed)
    rdocs, rbulk = rotation_docs(level, seed, GENERATOR_VERSION)      # GV-7
    return VectorSet(docs={**docs, **rdocs}, bulk={**bulk, **rbulk}, level=level, seed=seed,
                     generator_version=GENERATOR_VERSION)


def committed_dir() -> Path | None:
    """The repository's golden/ directory when running from a checkout, else None."""
    p = Path(__file__).resolve().parents[2] / "golden"
    return p if (p / "MANIFEST.json").is_file() else None


__all__ = ["FLAGS", "LEVELS", "GoldenFormatError", "VectorSet", "committed_dir", "generate",
           "read_tree", "validate_doc", "verify_manifest", "write_tree"]
