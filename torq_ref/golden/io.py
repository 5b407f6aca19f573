"""Writing and reading golden/ (spec/GV.md sections 2, 5, 6).

- JSON: ``json.dumps(doc, indent=1, ensure_ascii=True)`` + newline; key order is the order the
  builder inserted (stable), so the bytes are a pure function of the vectors.
- Bulk: safetensors written by :func:`write_safetensors` below (header keys sorted, no padding
  beyond the 8-byte alignment, no timestamps), so regeneration is byte-identical; any safetensors
  reader (the ``safetensors`` package, or :func:`read_safetensors`) loads them.
- MANIFEST.json: every file with its sha256, size, case count; generator version, level, seed.

Clauses: GV-1.2 the manifest, GV-2.1 schema validation, GV-5.2 the deterministic safetensors
writer, GV-6.1 the readers (each error names the file).
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from torq_ref.errors import UserError

_ST_DTYPES = {"uint8": "U8", "float32": "F32", "float64": "F64", "uint32": "U32"}
_ST_BACK = {v: k for k, v in _ST_DTYPES.items()}


class GoldenFormatError(UserError, ValueError):
    """A golden file is malformed (bad header, hash mismatch, schema violation)."""


@dataclass
class VectorSet:
    """Every golden vector: JSON documents (file name -> dict) and bulk arrays
    (name -> (arrays, metadata)), with the level and seed that made them."""

    docs: dict
    bulk: dict
    level: str
    seed: int
    generator_version: str


def dump_json(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, ensure_ascii=True) + "\n").encode("ascii")


def write_safetensors(arrays: dict, metadata: dict) -> bytes:
    """Serialize ``arrays`` (name -> ndarray) to safetensors bytes, deterministically."""
    header: dict = {"__metadata__": {k: str(v) for k, v in sorted(metadata.items())}}
    offset = 0
    blobs = []
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        if a.dtype.name not in _ST_DTYPES:
            raise TypeError(f"bulk array {name!r} has unsupported dtype {a.dtype}")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_DTYPES[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def read_safetensors(data: bytes, name: str = "<bytes>") -> tuple[dict, dict]:
    """(arrays, metadata) from safetensors bytes; ``name`` (the file) is named in every error.

    GV-6.1: the header length, the header JSON, each array's dtype, shape and data offsets are
    checked against the buffer, so a truncated or oversized file is an error, never a guess.
    """
    if len(data) < 8:
        raise GoldenFormatError(f"{name}: safetensors file shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise GoldenFormatError(f"{name}: safetensors header length {n} exceeds the file "
                                f"({len(data)} bytes): truncated or not a safetensors file")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GoldenFormatError(f"{name}: safetensors header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise GoldenFormatError(f"{name}: safetensors header is not a JSON object")
    meta = header.pop("__metadata__", {})
    base = 8 + n
    body = len(data) - base
    arrays = {}
    for key, info in header.items():
        try:
            lo, hi = (int(v) for v in info["data_offsets"])
            dt = np.dtype(_ST_BACK[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError) as err:
            raise GoldenFormatError(f"{name}: array {key!r} has a malformed header entry ({err!r})") from None
        want = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if not 0 <= lo <= hi <= body or hi - lo != want or min(shape, default=0) < 0:
            raise GoldenFormatError(
                f"{name}: array {key!r} needs bytes {lo}..{hi} ({want} for shape {list(shape)}) but "
                f"the data section has {body} bytes: truncated or inconsistent file")
        arrays[key] = np.frombuffer(data[base + lo: base + hi], dtype=dt).astype(
            dt.newbyteorder("="), copy=True).reshape(shape)
    return arrays, meta


def schema_text(name: str = "mx_vectors.schema.json") -> str:
    """The JSON Schema ``name`` of the vector files (shipped inside the package); every property
    it defines carries a description (GV-1.3)."""
    return resources.files("torq_ref.golden").joinpath(name).read_text("utf-8")


#: the schemas written under golden/schema/ (the rotation kinds' files name the second, GV-7)
SCHEMAS = ("mx_vectors.schema.json", "rotation_vectors.schema.json")


def schema(name: str = "mx_vectors.schema.json") -> dict:
    return json.loads(schema_text(name))


def validate_doc(doc: dict) -> None:
    """Validate a vector document against the schema (needs jsonschema) and its own counts."""
    import jsonschema   # test extra; imported here so reading vectors does not need it

    try:
        jsonschema.validate(doc, schema(doc.get("schema") if doc.get("schema") in SCHEMAS else SCHEMAS[0]))
    except jsonschema.ValidationError as err:
        raise GoldenFormatError(f"schema violation: {err.message} at {list(err.absolute_path)}") from err
    check_doc_structure(doc)


def check_doc_structure(doc, name: str = "vector file") -> None:
    """The checks that need no jsonschema (GV-2.2, GV-2.3): counts, flags with notes, unique tcIds.

    ``read_tree`` runs them on every file it loads, so a corrupt tree is rejected on reading."""
    try:
        groups = doc["testGroups"]
        tests = [t for g in groups for t in g["tests"]]
        n_declared = doc["numberOfTests"]
        used = {f for t in tests for f in t["flags"]}
        notes = set(doc["notes"])
        ids = [t["tcId"] for t in tests]
    except (KeyError, TypeError) as err:
        raise GoldenFormatError(f"{name}: not a vector document (missing or malformed {err})") from None
    if len(tests) != n_declared:
        raise GoldenFormatError(f"{name}: numberOfTests {n_declared} != {len(tests)} tests present")
    missing = used - notes
    if missing:
        raise GoldenFormatError(f"{name}: flags without a notes entry: {sorted(missing)}")
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise GoldenFormatError(f"{name}: tcId values are not unique within the file (repeated: {dup})")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize(vectors) -> dict:
    """relative path -> bytes for every file of a :class:`VectorSet`, MANIFEST.json included."""
    files: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    for name in SCHEMAS:
        files[f"schema/{name}"] = schema_text(name).encode("utf-8")
        counts[f"schema/{name}"] = 0
    for name, doc in vectors.docs.items():
        files[name] = dump_json(doc)
        counts[name] = doc["numberOfTests"]
    for name, (arrays, meta) in vectors.bulk.items():
        path = f"bulk/{name}.safetensors"
        files[path] = write_safetensors(arrays, meta)
        counts[path] = bulk_case_count(name, arrays)
    manifest = {
        "generator": "torq_ref.golden",
        "generatorVersion": vectors.generator_version,
        "command": f"python -m torq_ref golden --out DIR --level {vectors.level} --seed {vectors.seed}",
        "level": vectors.level,
        "seed": vectors.seed,
        "files": [{"path": p, "sha256": sha256(files[p]), "bytes": len(files[p]), "cases": counts[p]}
                  for p in sorted(files)],
        "totalCases": sum(counts.values()),
    }
    files["MANIFEST.json"] = dump_json(manifest)
    return files


def bulk_case_count(name: str, arrays: dict) -> int:
    """Cases in a bulk file: elements for encode, blocks for quantize, scales for swizzle, dots."""
    if "code" in arrays:
        return int(arrays["code"].size)
    if "scales" in arrays and "codes" in arrays:
        return int(arrays["scales"].size)
    if "swizzled" in arrays:
        return int(arrays["scales"].size)
    if "c" in arrays:
        return int(arrays["c"].size)
    if "xCal" in arrays:            # maxent_heldout: one case per token row (GV-7.4)
        return int(arrays["xCal"].shape[0] + arrays["xHeld"].shape[0])
    raise GoldenFormatError(f"bulk file {name} has no recognised arrays")


def write_tree(vectors, out_dir: Path) -> dict:
    """Write every file under ``out_dir``; returns the manifest dict."""
    out_dir = Path(out_dir)
    files = serialize(vectors)
    for rel, data in files.items():
        p = out_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return json.loads(files["MANIFEST.json"])


def verify_manifest(root: Path) -> dict:
    """Check every file named in root/MANIFEST.json against its sha256 and size; return manifest."""
    root = Path(root)
    manifest = _load_json(root / "MANIFEST.json")
    for entry in manifest["files"]:
        try:
            data = (root / entry["path"]).read_bytes()
        except OSError as err:
            raise GoldenFormatError(f"{root / entry['path']}: named in MANIFEST.json but unreadable "
                                    f"({err.strerror})") from None
        if sha256(data) != entry["sha256"] or len(data) != entry["bytes"]:
            raise GoldenFormatError(f"{entry['path']}: content does not match MANIFEST.json")
    return manifest


def _load_json(path: Path):
    """Parse one golden JSON file; a bad file is a GoldenFormatError naming it (GV-2.5)."""
    try:
        return json.loads(Path(path).read_text("ascii"))
    except OSError as err:
        raise GoldenFormatError(f"{path}: cannot read ({err.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GoldenFormatError(f"{path}: not valid ASCII JSON ({err})") from None


def read_tree(root: Path):
    """Load a golden directory (after verifying its manifest) into a :class:`VectorSet`."""
    root = Path(root)
    manifest = verify_manifest(root)
    docs, bulk = {}, {}
    for entry in manifest["files"]:
        path = entry["path"]
        if path.startswith("schema/"):
            continue
        if path.endswith(".json"):
            doc = _load_json(root / path)
            if isinstance(doc, dict) and "testGroups" in doc:
                check_doc_structure(doc, str(root / path))
            docs[path] = doc
        elif path.endswith(".safetensors"):
            name = path[len("bulk/"):-len(".safetensors")]
            bulk[name] = read_safetensors((root / path).read_bytes(), str(root / path))
    return VectorSet(docs=docs, bulk=bulk, level=manifest["level"], seed=manifest["seed"],
                     generator_version=manifest["generatorVersion"])
