"""Golden vectors: files, schema, manifest, regeneration, hand-pinned bytes (spec/GV.md)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from torq_ref import golden
from torq_ref.golden import io as gio
from torq_ref.golden.hexio import from_hex, to_hex

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden"


@pytest.fixture(scope="module")
def committed():
    return golden.read_tree(GOLDEN)


@pytest.fixture(scope="module")
def fresh_files():
    return gio.serialize(golden.generate("default"))


def _group(doc, **params):
    return next(g for g in doc["testGroups"] if all(g.get(k) == v for k, v in params.items()))


def _by_comment(tests, comment):
    return next(t for t in tests if t["comment"] == comment and t["result"] == "valid")


@pytest.mark.clause("GV-1.1", "GV-1.2")
def test_manifest_lists_every_file_with_matching_hash():
    manifest = golden.verify_manifest(GOLDEN)
    listed = {e["path"] for e in manifest["files"]} | {"MANIFEST.json"}
    # golden/ subfolders other than schema/ and bulk/ belong to other areas (e.g. golden/model/)
    mine = [p for p in GOLDEN.rglob("*") if p.is_file() and
            (p.parent == GOLDEN or p.relative_to(GOLDEN).parts[0] in ("schema", "bulk"))]
    assert listed == {str(p.relative_to(GOLDEN)) for p in mine}
    assert sum(p.stat().st_size for p in mine) < 10_000_000
    assert manifest["seed"] == 20260303 and manifest["level"] == "default"
    assert manifest["generatorVersion"] and all(e["cases"] >= 0 for e in manifest["files"])


@pytest.mark.clause("GV-5.1", "GV-3.2", "GV-4.1")
def test_committed_golden_equals_fresh_regeneration(fresh_files):
    for rel, data in fresh_files.items():
        assert (GOLDEN / rel).read_bytes() == data, f"{rel} differs from a fresh regeneration"


@pytest.mark.clause("GV-5.1")
def test_cli_regenerates_byte_identically(tmp_path):
    from torq_ref.golden import cli

    import argparse
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    args = p.parse_args(["golden", "--out", str(tmp_path)])
    assert args.func(args) == 0
    for e in golden.verify_manifest(GOLDEN)["files"] + [{"path": "MANIFEST.json"}]:
        assert (tmp_path / e["path"]).read_bytes() == (GOLDEN / e["path"]).read_bytes()
    check = p.parse_args(["golden", "--out", str(tmp_path), "--check"])
    assert check.func(check) == 0
    (tmp_path / "fp4_pack.json").write_text("{}")
    assert check.func(check) == 1


@pytest.mark.clause("GV-2.1", "GV-2.3")
def test_every_json_file_validates_against_schema(committed):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((GOLDEN / "schema" / "mx_vectors.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for name, doc in committed.docs.items():
        golden.validate_doc(doc)
        assert set(doc["notes"]) == {f for g in doc["testGroups"] for t in g["tests"] for f in t["flags"]}


@pytest.mark.clause("GV-6.1", "GV-2.1")
def test_validator_rejects_broken_documents(committed):
    pytest.importorskip("jsonschema")
    doc = json.loads(json.dumps(committed.docs["fp4_pack.json"]))
    doc["numberOfTests"] += 1
    with pytest.raises(golden.GoldenFormatError, match="numberOfTests"):
        golden.validate_doc(doc)
    doc = json.loads(json.dumps(committed.docs["fp4_pack.json"]))
    doc["testGroups"][0]["tests"][0]["result"] = "maybe"
    with pytest.raises(golden.GoldenFormatError, match="schema"):
        golden.validate_doc(doc)
    doc = json.loads(json.dumps(committed.docs["fp4_pack.json"]))
    doc["notes"].pop("PackOrder")
    with pytest.raises(golden.GoldenFormatError, match="notes"):
        golden.validate_doc(doc)


@pytest.mark.clause("GV-6.1")
def test_reader_detects_tampering(tmp_path):
    import shutil
    shutil.copytree(GOLDEN, tmp_path / "g", ignore=shutil.ignore_patterns("model"))
    p = tmp_path / "g" / "mx_dequantize.json"
    p.write_bytes(p.read_bytes().replace(b'"00"', b'"01"', 1))
    with pytest.raises(golden.GoldenFormatError, match="mx_dequantize.json"):
        golden.read_tree(tmp_path / "g")


@pytest.mark.clause("GV-2.2")
def test_results_and_variants(committed):
    for doc in committed.docs.values():
        for g in doc["testGroups"]:
            ids = {t["tcId"]: t for t in g["tests"]}
            for t in g["tests"]:
                if t["result"] != "valid":
                    base = ids[t["variantOf"]]
                    assert base["result"] == "valid"
                    for key in ("x", "codes", "scale"):
                        if key in t and t["result"] == "invalid" and key == "x":
                            assert t[key] == base[key]
    q = committed.docs["mx_quantize.json"]
    flags = {f for g in q["testGroups"] for t in g["tests"] if t["result"] == "acceptable" for f in t["flags"]}
    assert {"NanElementCode", "InfScaleSatfinite"} <= flags
    inv = {f for d in committed.docs.values() for g in d["testGroups"] for t in g["tests"]
           if t["result"] == "invalid" for f in t["flags"]}
    assert inv == {"KnownDefectTiesAway", "KnownDefectHighNibbleFirst", "KnownDefectScaleZeroAsZero",
                   "KnownDefectFloatLog2", "KnownDefectScaleNotClamped",
                   "KnownDefectDivisorClampedAt2^-126", "KnownDefectFlushedScaleCodeZero",
                   "KnownDefectNanBlockFiniteScale", "KnownDefectGgufPairNibbles"}


@pytest.mark.clause("GV-4.3", "MX-8.3")
def test_known_defect_quantize_variants_pinned(committed):
    """Hand-derived: a FLOOR e2m1 block whose max is 8 - ulp (0x40ffffff) has E = 2, so scale
    127 + 2 - 2 = 0x7f; float32 log2(8 - 2^-21) rounds to 3.0, so the float-log2 defect gives
    0x80. A block of max 2^-130 has FLOOR code 127 - 130 - 2 < 0: clamped 0x00, wrapped
    (-5) mod 256 = 0xfb."""
    q = committed.docs["mx_quantize.json"]
    floor = next(g for g in q["testGroups"] if g["format"] == "e2m1" and g["scaleRule"] == "floor")
    ids = {t["tcId"]: t for t in floor["tests"]}
    def amax_is(t, word):
        xs = from_hex(ids[t["variantOf"]]["x"], "float32")
        return np.abs(xs).max() == from_hex(word, "float32")[0]
    log2 = [t for t in floor["tests"] if t["flags"] == ["KnownDefectFloatLog2"]
            and amax_is(t, "40ffffff")]
    assert log2 and {ids[t["variantOf"]]["scale"] for t in log2} == {"7f"}
    assert {t["scale"] for t in log2} == {"80"}
    wrap = [t for t in floor["tests"] if t["flags"] == ["KnownDefectScaleNotClamped"]]
    assert wrap and all(ids[t["variantOf"]]["scale"] == "00" for t in wrap)
    tiny = np.zeros(32, np.float32); tiny[0] = 2.0 ** -130
    from torq_ref.golden.defects import unclamped_scale
    assert unclamped_scale(float(tiny[0]), "e2m1") == 0xFB
    # ggml block: element j low nibble, j + 16 high; [1.0] + 15 zeros + [-6.0] + 15 zeros, scale 0x7f
    g = committed.docs["gguf_mxfp4.json"]["testGroups"][0]
    assert g["layout"] == "ggml-block_mxfp4" and len(g["tests"]) > 100
    from torq_ref.mx.layout import pack_gguf_mxfp4
    c = np.zeros(32, np.uint8); c[0] = 0x2; c[16] = 0xF
    assert to_hex(pack_gguf_mxfp4(np.array([0x7F], np.uint8), c).ravel()) == \
        "7f f2 " + " ".join(["00"] * 15)


@pytest.mark.clause("GV-2.4")
def test_hex_encoding_round_trip():
    x = np.array([1.0, -6.0, np.inf, -0.0], np.float32)
    assert to_hex(x) == "3f800000 c0c00000 7f800000 80000000"
    assert to_hex(np.array([0xF2, 0x59], np.uint8)) == "f2 59"
    assert to_hex(np.array([1.0])) == "3ff0000000000000"
    np.testing.assert_array_equal(from_hex(to_hex(x), "float32"), x)
    with pytest.raises(ValueError):
        from_hex("3f80", "float32")


@pytest.mark.clause("GV-2.5")
def test_rule_groups_share_inputs(committed):
    q = committed.docs["mx_quantize.json"]
    xs = [[t["x"] for t in g["tests"] if t["result"] == "valid"] for g in q["testGroups"]
          if g["format"] == "e2m1" and g["scaleRule"] != "mse"]
    assert len(xs) == 4 and all(x == xs[0] for x in xs)


@pytest.mark.clause("GV-2.6", "GV-4.2", "MX-4.8")
def test_mse_group_small_last_and_pinned(committed):
    """The MSE group: last, a few KB, the hand blocks of tests/test_mx_mse.py pinned here by hand
    (scales from the derivations there), the picked shared inputs FLOOR + 1 exactly where flagged."""
    q = committed.docs["mx_quantize.json"]
    g = q["testGroups"][-1]
    assert (g["format"], g["scaleRule"]) == ("e2m1", "mse")
    assert len(json.dumps(g)) < 16_000
    t = g["tests"]
    assert _by_comment(t, "mse: 32 x 7.5, FLOOR saturates (error 72), FLOOR+1 error 8")["scale"] == "80"
    assert set(_by_comment(t, "mse: 32 x 7.5, FLOOR saturates (error 72), FLOOR+1 error 8")["codes"].split()) == {"06"}
    assert _by_comment(t, "mse: [4, 0.5, 0...], FLOOR exact, FLOOR+1 error 0.25")["scale"] == "7f"
    tie = _by_comment(t, "mse: 32 x 7.0, both errors 32, the tie keeps FLOOR")
    assert tie["scale"] == "7f" and set(tie["codes"].split()) == {"07"}
    assert _by_comment(t, "mse: [7.5, 0.5, 0.5, 0.5, 0...], squared errors 2.25 / 1.0 (absolute 1.5 / 2.0)")["scale"] == "80"
    assert _by_comment(t, "mse: zero block")["scale"] == "00"
    floor = {u["x"]: u for u in _group(q, format="e2m1", scaleRule="floor")["tests"] if u["result"] == "valid"}
    shared = [u for u in t if u["result"] == "valid" and not u["comment"].startswith("mse: ")]
    assert len(shared) >= 6 and all(u["x"] in floor for u in shared)
    for u in shared:
        d = int(u["scale"], 16) - int(floor[u["x"]]["scale"], 16)
        assert d == (1 if "MseFloorPlusOne" in u["flags"] else 0), u["comment"]


@pytest.mark.clause("GV-3.1")
def test_case_sources_cover_the_tricky_list(committed):
    q = committed.docs["mx_quantize.json"]
    flags = {f for g in q["testGroups"] for t in g["tests"] for f in t["flags"]}
    for f in ("Tie", "TieNeighbour", "Saturation", "SignedZero", "ZeroBlock", "ScaleBoundary",
              "PowerOfTwo", "ScaleCodeZero", "Subnormal", "ExtremeMagnitude", "MixedMagnitude",
              "NaNBlock", "InfBlock", "Bf16Trap", "RcdSubnormalQuotient", "Grid", "Random"):
        assert f in flags, f


@pytest.mark.clause("GV-5.2")
def test_bulk_files_load_with_the_safetensors_package(committed):
    st = pytest.importorskip("safetensors.numpy")
    for name, (arrays, meta) in committed.bulk.items():
        theirs = st.load_file(str(GOLDEN / "bulk" / f"{name}.safetensors"))
        assert set(theirs) == set(arrays)
        for k in arrays:
            np.testing.assert_array_equal(theirs[k], arrays[k])
        assert meta["kind"] in {"encode", "quantize", "nvfp4", "swizzle", "dot_scaled", "maxent"}
    data = gio.write_safetensors({"a": np.arange(3, dtype=np.uint8)}, {"k": "v"})
    arrays, meta = gio.read_safetensors(data)
    assert meta == {"k": "v"} and arrays["a"].tolist() == [0, 1, 2]


# ------------------------------------------------------------------- hand-pinned bytes (GV-4.2)
# Written out from docs/mx-format.md section 8 by hand; NOT computed by torq_ref.mx.

@pytest.mark.clause("GV-4.2")
def test_pinned_e2m1_element_codes(committed):
    enc = _group(committed.docs["mx_encode.json"], format="e2m1")["tests"]
    got = {from_hex(t["x"], "float32")[0].item(): t["code"] for t in enc if t["result"] == "valid"
           and "NonFinite" not in t["flags"]}
    pinned = {0.25: "00", 0.75: "02", 1.25: "02", 1.75: "04", 2.5: "04", 3.5: "06", 5.0: "06",
              -0.25: "08", -5.0: "0e", 6.0: "07", 6.25: "07", 12.0: "07", float(np.float32(1e30)): "07",
              float(np.float32(-1e-30)): "08", 0.5: "01", -6.0: "0f"}
    for x, code in pinned.items():
        assert got[x] == code, x
    ulp5 = float(np.nextafter(np.float32(5), np.float32(9)))
    assert got[ulp5] == "07" and got[float(np.nextafter(np.float32(5), np.float32(0)))] == "06"


@pytest.mark.clause("GV-4.2")
def test_pinned_block_scales(committed):
    q = committed.docs["mx_quantize.json"]
    floor = _group(q, format="e2m1", scaleRule="floor")["tests"]
    rceil = _group(q, format="e2m1", scaleRule="rceil")["tests"]
    assert _by_comment(floor, "block max 7.99999952")["scale"] == "7f"       # 8 - ulp
    assert _by_comment(floor, "block max 8")["scale"] == "80"
    assert _by_comment(floor, "block max 6.00000048")["scale"] == "7f"      # 6 + ulp
    assert _by_comment(rceil, "block max 6.00000048")["scale"] == "80"
    assert _by_comment(floor, "block max 3.40282347e+38")["scale"] == "fc"   # FLT_MAX
    assert _by_comment(rceil, "block max 3.40282347e+38")["scale"] == "fd"
    neg0 = _by_comment(floor, "all -0.0")
    assert neg0["scale"] == "00" and set(neg0["codes"].split()) == {"08"}
    nan = _by_comment(floor, "NaN in a block")
    assert nan["scale"] == "ff"
    inf_x = _by_comment(floor, "+Inf in a block")["x"]
    inf = [t for t in floor if t["x"] == inf_x]
    assert {t["scale"] for t in inf} == {"ff", "fe"}
    # smallest-normal block max 2^-126: FLOOR clamps to code 0 (2^-126 -> 127 - 126 - 2 < 0)
    assert _by_comment(floor, "block max 1.17549435e-38")["scale"] == "00"


@pytest.mark.clause("GV-4.2")
def test_pinned_layouts(committed):
    pack = committed.docs["fp4_pack.json"]["testGroups"][0]["tests"][0]
    assert pack["codes"] == "02 0f 09 05" and pack["packed"] == "f2 59"
    sw = {(t["rows"], t["cols"]): t for t in committed.docs["scale_swizzle.json"]["testGroups"][0]["tests"]}
    t = sw[(130, 6)]
    buf = from_hex(t["swizzled"], "uint8")
    s = from_hex(t["scales"], "uint8").reshape(130, 6)
    assert buf.size == 256 * 8
    # offset(r, c) = ((r//128)*ceil(cols/4) + c//4)*512 + (r%32)*16 + ((r%128)//32)*4 + c%4
    assert buf[82] == s[5, 2] and buf[593] == s[5, 5]
    assert buf[1024] == s[128, 0]


@pytest.mark.clause("GV-4.2", "MX-8.4", "MX-8.5", "MX-8.6")
def test_pinned_vendor_layouts(committed):
    groups = {(g["layout"], g.get("numWarps")): {(t["rows"], t["cols"]): t for t in g["tests"]}
              for g in committed.docs["scale_swizzle.json"]["testGroups"]}
    t = groups[("triton-hopper", 1)][(32, 4)]
    buf, s = from_hex(t["swizzled"], "uint8"), from_hex(t["scales"], "uint8").reshape(32, 4)
    assert buf.size == 32 * 4
    assert [buf[2], buf[4], buf[1], buf[32], buf[64]] == [s[0, 1], s[1, 0], s[8, 0], s[16, 0], s[0, 2]]
    t = groups[("triton-blackwell", None)][(1, 3)]
    buf = from_hex(t["swizzled"], "uint8")
    assert buf.size == 128 * 8 and (buf[3:] == 0).all()         # cols padded to 8, not 4
    t = groups[("triton-cdna4", None)][(33, 9)]
    buf, s = from_hex(t["swizzled"], "uint8"), from_hex(t["scales"], "uint8").reshape(33, 9)
    assert buf.size == 64 * 16
    assert [buf[1], buf[4], buf[2], buf[64], buf[256], buf[512]] == \
        [s[16, 0], s[1, 0], s[0, 4], s[0, 1], s[0, 8], s[32, 0]]


@pytest.mark.clause("GV-4.2", "MX-8.9")
def test_pinned_aiter_shuffle(committed):
    groups = {g["layout"]: {(t["rows"], t["cols"]): t for t in g["tests"]}
              for g in committed.docs["scale_swizzle.json"]["testGroups"] if g.get("numWarps") is None}
    t = groups["aiter-e8m0-shuffle"][(33, 9)]
    buf, s = from_hex(t["swizzled"], "uint8"), from_hex(t["scales"], "uint8").reshape(33, 9)
    assert buf.size == 256 * 16                                  # rows padded to 256, not 32
    assert [buf[1], buf[4], buf[2], buf[64], buf[256], buf[512]] == \
        [s[16, 0], s[1, 0], s[0, 4], s[0, 1], s[0, 8], s[32, 0]]
    assert (buf[64 * 16:] == 0).all()                            # past the CDNA4 buffer: padding


@pytest.mark.clause("GV-4.2", "MX-8.10")
def test_pinned_aiter_a16w4(committed):
    groups = {g["gateUp"]: g for g in committed.docs["scale_swizzle.json"]["testGroups"]
              if g["layout"] == "aiter-moe-a16w4"}
    t = groups[True]["tests"][0]
    assert groups[True]["experts"] == 1 and (t["rows"], t["cols"]) == (64, 8)
    buf, s = from_hex(t["swizzled"], "uint8"), from_hex(t["scales"], "uint8").reshape(64, 8)
    assert buf.size == 64 * 8                                    # no padding
    assert [buf[1], buf[256], buf[4], buf[511]] == [s[32, 0], s[16, 0], s[1, 0], s[63, 7]]
    t = groups[False]["tests"][0]
    buf, s = from_hex(t["swizzled"], "uint8"), from_hex(t["scales"], "uint8").reshape(64, 8)
    assert groups[False]["experts"] == 2 and [buf[1], buf[256]] == [s[16, 0], s[32, 0]]


@pytest.mark.clause("GV-4.2")
def test_pinned_dequantize(committed):
    tests = {t["scale"]: t for t in committed.docs["mx_dequantize.json"]["testGroups"][0]["tests"]
             if t["result"] == "valid"}
    y0 = from_hex(tests["00"]["y"], "float64")
    assert y0[1] == 0.5 * 2.0 ** -127 and y0[7] == 6 * 2.0 ** -127     # 0x00 is 2^-127, not 0
    assert np.isnan(from_hex(tests["ff"]["y"], "float64")).all()
    assert from_hex(tests["fe"]["y"], "float64")[7] == 6 * 2.0 ** 127    # beyond float32


@pytest.mark.clause("GV-5.1")
def test_regeneration_command_in_manifest():
    manifest = json.loads((GOLDEN / "MANIFEST.json").read_text())
    assert manifest["command"].startswith("python -m torq_ref golden --out DIR --level default")


@pytest.mark.bulk
@pytest.mark.clause("GV-3.2")
def test_thorough_level_is_deterministic_and_larger():
    a = gio.serialize(golden.generate("thorough"))
    b = gio.serialize(golden.generate("thorough"))
    assert a == b
    d = json.loads(a["MANIFEST.json"])
    assert d["totalCases"] > json.loads((GOLDEN / "MANIFEST.json").read_text())["totalCases"]


# ------------------------------------------------------------------- readers name the broken file
def _copy_with_manifest(tmp_path, rel: str, new_bytes: bytes):
    """A copy of golden/ where file ``rel`` is replaced and MANIFEST.json re-hashed to match it, so
    only the reader's own checks stand between the corrupt file and the caller."""
    import shutil
    root = tmp_path / "g"
    shutil.copytree(GOLDEN, root, ignore=shutil.ignore_patterns("model"))
    (root / rel).write_bytes(new_bytes)
    manifest = json.loads((root / "MANIFEST.json").read_text("ascii"))
    for e in manifest["files"]:
        if e["path"] == rel:
            e["sha256"], e["bytes"] = gio.sha256(new_bytes), len(new_bytes)
    (root / "MANIFEST.json").write_bytes(gio.dump_json(manifest))
    return root


@pytest.mark.clause("GV-6.1")
def test_safetensors_reader_rejects_bad_headers():
    good = gio.write_safetensors({"a": np.arange(6, dtype=np.uint8).reshape(2, 3)}, {"k": "v"})
    oversized = struct.pack("<Q", 10**9) + good[8:]
    with pytest.raises(golden.GoldenFormatError, match=r"f\.safetensors: .*header length 1000000000 exceeds"):
        gio.read_safetensors(oversized, "f.safetensors")
    with pytest.raises(golden.GoldenFormatError, match="truncated"):
        gio.read_safetensors(good[:-2], "f.safetensors")
    with pytest.raises(golden.GoldenFormatError, match="not JSON"):
        gio.read_safetensors(struct.pack("<Q", 4) + b"{{{{", "f.safetensors")
    bad_dtype = good.replace(b'"U8"', b'"Q8"')
    with pytest.raises(golden.GoldenFormatError, match="array 'a' has a malformed header"):
        gio.read_safetensors(bad_dtype, "f.safetensors")


@pytest.mark.clause("GV-6.1")
def test_read_tree_names_a_truncated_bulk_file(tmp_path):
    rel = "bulk/quantize_e2m1_floor.safetensors"
    root = _copy_with_manifest(tmp_path, rel, (GOLDEN / rel).read_bytes()[:-100])
    with pytest.raises(golden.GoldenFormatError, match=r"quantize_e2m1_floor\.safetensors: .*truncated"):
        golden.read_tree(root)


@pytest.mark.clause("GV-6.1")
def test_read_tree_names_a_corrupt_json_file(tmp_path):
    rel = "mx_encode.json"
    root = _copy_with_manifest(tmp_path, rel, (GOLDEN / rel).read_bytes()[:-40])
    with pytest.raises(golden.GoldenFormatError, match=r"mx_encode\.json: not valid ASCII JSON"):
        golden.read_tree(root)


@pytest.mark.clause("GV-6.1")
def test_read_tree_validates_duplicate_tcids(tmp_path, committed):
    doc = json.loads(json.dumps(committed.docs["mx_encode.json"]))
    tests = doc["testGroups"][0]["tests"]
    tests[1]["tcId"] = tests[0]["tcId"]
    root = _copy_with_manifest(tmp_path, "mx_encode.json", gio.dump_json(doc))
    with pytest.raises(golden.GoldenFormatError, match=r"mx_encode\.json: tcId values are not unique"):
        golden.read_tree(root)
    from torq_ref import conformance
    with pytest.raises(golden.GoldenFormatError, match="tcId"):
        conformance.check("encode", lambda x, fmt: None, golden_dir=root)


@pytest.mark.clause("GV-6.1")
def test_read_tree_names_a_missing_file(tmp_path):
    root = _copy_with_manifest(tmp_path, "fp4_pack.json", b"")
    (root / "fp4_pack.json").unlink()
    with pytest.raises(golden.GoldenFormatError, match=r"fp4_pack\.json: named in MANIFEST.json"):
        golden.read_tree(root)


def _properties_without_description(node, path="$"):
    """Paths of every schema property (a `properties` entry) with no non-empty description."""
    out = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            if not (isinstance(sub, dict) and isinstance(sub.get("description"), str)
                    and sub["description"].strip()):
                out.append(f"{path}.properties.{name}")
        for k, v in node.items():
            out += _properties_without_description(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _properties_without_description(v, f"{path}[{i}]")
    return out


@pytest.mark.clause("GV-1.3")
def test_every_schema_property_is_described():
    from importlib import resources
    texts = {"torq_ref/golden/mx_vectors.schema.json":
             resources.files("torq_ref.golden").joinpath("mx_vectors.schema.json").read_text("utf-8")}
    texts.update({str(p): p.read_text("utf-8") for p in sorted((GOLDEN / "schema").glob("*.json"))})
    assert len(texts) >= 2
    for name, text in texts.items():
        assert _properties_without_description(json.loads(text)) == [], name
    assert _properties_without_description({"properties": {"a": {"type": "string"}}}) == ["$.properties.a"]


@pytest.mark.clause("GV-2.9", "MX-9.5")
def test_nvfp4_rule_none_group(committed):
    """The g = 1 group: MX-9.5's pinned examples read from the committed file and every test
    recomputed under rule none."""
    from torq_ref import mx
    doc = committed.docs["nvfp4_quantize.json"]
    assert [g["globalScaleRule"] for g in doc["testGroups"]] == ["amax", "none"]
    tests = _group(doc, globalScaleRule="none")["tests"]
    assert 10 <= len(tests) <= 40                       # small and designed (GV-2.9)
    for t in tests:
        assert "Nvfp4NoTensorScale" in t["flags"] and t["globalScale"] == "3f800000"
        x = from_hex(t["x"], "float32").reshape(1, -1)
        q = mx.quantize_nvfp4(x, global_scale_rule="none")
        assert to_hex(q.scales.ravel()) == t["scale"] and to_hex(q.codes.ravel()) == t["codes"]
    pins = {"x = 3000: S saturates to 0x7E (448), codes 0x7": ("7e", "07"),
            "1.01 x 6 x 2^-10: S = 0x01 (2^-9), codes 0x5": ("01", "05"),
            "amax_b / 6 = 2^-10, a tie to E4M3 0: S = 0, every code +-0": ("00", None),
            "amax_b / 6 = 1.0625, an E4M3 tie: S = 1.0 (RNE), 6.375 saturates to 6": ("38", "07")}
    for comment, (s, c0) in pins.items():
        t = _by_comment(tests, comment)
        assert t["scale"] == s, comment
        codes = t["codes"].split()
        if c0 is None:
            assert set(codes) <= {"00", "08"}
        else:
            assert codes[0] == c0
    # amax 2688: the amax rule's g is 1 as well, so both rules give the same bytes
    t = _by_comment(tests, "amax 2688: g = 1 under both rules")
    a = mx.quantize_nvfp4(from_hex(t["x"], "float32").reshape(1, -1))
    assert float(a.global_scale) == 1.0 and to_hex(a.codes.ravel()) == t["codes"]
