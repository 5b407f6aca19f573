"""Writing and reading golden/ (spec/GV.md sections 2, 5, 6).

- JSON: ``json.dumps(doc, indent=1, ensure_ascii=True)`` + newline; key order is the order the
  builder inserted (stable), so the bytes are a pure function of the vectors.
- Bulk: safetensors written by :func:`write_safetensors` below (header keys sorted, no padding
  beyond the 8-byte alignment, no timestamps), so regeneration is byte-identical; any safetensors
  reader (the ``safetensors`` package, or :func:`read_safetensors`) loads them.
- MANIFEST.json: every file with its sha256, size, case count; generator version, level, seed.
"""
from __future__ import annotations

import hashlib
import json
import struct
from importlib import resources
from pathlib import Path

import numpy as np

_ST_DTYPES = {"uint8": "U8", "float32": "F32", "float64": "F64", "uint32": "U32"}
_ST_BACK = {v: k for k, v in _ST_DTYPES.items()}


class GoldenFormatError(ValueError):
    """A golden file is malformed (bad header, hash mismatch, schema violation)."""


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


def read_safetensors(data: bytes) -> tuple[dict, dict]:
    """(arrays, metadata) from safetensors bytes."""
    if len(data) < 8:
        raise GoldenFormatError("safetensors file shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    arrays = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        dt = np.dtype(_ST_BACK[info["dtype"]]).newbyteorder("<")
        arrays[name] = np.frombuffer(data[base + lo: base + hi], dtype=dt).astype(
            dt.newbyteorder("="), copy=True).reshape(info["shape"])
    return arrays, meta


def schema_text() -> str:
    """The JSON Schema of the vector files (shipped inside the package)."""
    return resources.files("torq_ref.golden").joinpath("mx_vectors.schema.json").read_text("utf-8")


def schema() -> dict:
    return json.loads(schema_text())


def validate_doc(doc: dict) -> None:
    """Validate a vector document against the schema (needs jsonschema) and its own counts."""
    import jsonschema   # test extra; imported here so reading vectors does not need it

    try:
        jsonschema.validate(doc, schema())
    except jsonschema.ValidationError as err:
        raise GoldenFormatError(f"schema violation: {err.message} at {list(err.absolute_path)}") from err
    n = sum(len(g["tests"]) for g in doc["testGroups"])
    if n != doc["numberOfTests"]:
        raise GoldenFormatError(f"numberOfTests {doc['numberOfTests']} != {n} tests present")
    used = {f for g in doc["testGroups"] for t in g["tests"] for f in t["flags"]}
    missing = used - set(doc["notes"])
    if missing:
        raise GoldenFormatError(f"flags without a notes entry: {sorted(missing)}")
    ids = [t["tcId"] for g in doc["testGroups"] for t in g["tests"]]
    if len(ids) != len(set(ids)):
        raise GoldenFormatError("tcId values are not unique within the file")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize(vectors) -> dict:
    """relative path -> bytes for every file of a :class:`VectorSet`, MANIFEST.json included."""
    files: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    files["schema/mx_vectors.schema.json"] = schema_text().encode("utf-8")
    counts["schema/mx_vectors.schema.json"] = 0
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
    manifest = json.loads((root / "MANIFEST.json").read_text("ascii"))
    for entry in manifest["files"]:
        data = (root / entry["path"]).read_bytes()
        if sha256(data) != entry["sha256"] or len(data) != entry["bytes"]:
            raise GoldenFormatError(f"{entry['path']}: content does not match MANIFEST.json")
    return manifest


def read_tree(root: Path):
    """Load a golden directory (after verifying its manifest) into a :class:`VectorSet`."""
    from . import VectorSet

    root = Path(root)
    manifest = verify_manifest(root)
    docs, bulk = {}, {}
    for entry in manifest["files"]:
        path = entry["path"]
        if path.startswith("schema/"):
            continue
        if path.endswith(".json"):
            docs[path] = json.loads((root / path).read_text("ascii"))
        elif path.endswith(".safetensors"):
            name = path[len("bulk/"):-len(".safetensors")]
            bulk[name] = read_safetensors((root / path).read_bytes())
    return VectorSet(docs=docs, bulk=bulk, level=manifest["level"], seed=manifest["seed"],
                     generator_version=manifest["generatorVersion"])
