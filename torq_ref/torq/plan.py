"""The exported TORQ plan: every site's transform of every table row, as files (spec/TQ.md section 8).

A plan is a directory:

    plan.json               the manifest (JSON Schema: plan.schema.json, next to this module)
    plan.schema.json        a copy of that schema
    layer-00000.safetensors the arrays of layer 0 (scale vectors, dense matrices, block rotations)
    ...

``PlanRecorder`` is the engine's ``on_layer`` callback (TQ-8.1): it writes layer i's arrays as
soon as the engine has built them, so a plan never holds more than one layer in memory, and the
manifest at the end. ``load_plan`` reads a plan back (JSON and safetensors only, never a pickle)
and ``check_model`` refuses a model that is not the one the plan was fitted on, naming the site
(TQ-8.3). ``export_run`` is ``run`` with the recorder attached (``run --export-plan DIR``).
Everything a consumer needs is in the files, nothing in this code: tests/plan_applier.py applies a
plan from the spec alone (TQ-8.4).
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from torq_ref.model.hooks import SITES

from .methods import SettingsError, TorqConfig, weight_quant_of

FORMAT = "torq-plan"
FORMAT_VERSION = 1
MANIFEST = "plan.json"
SCHEMA = "plan.schema.json"
SCHEMA_PATH = Path(__file__).with_name(SCHEMA)
#: the runtime order of one site (TQ-8.2); written into every manifest
SITE_ORDER = ("scale", "matrix", "block", "act_quant")


class PlanError(ValueError):
    """A plan directory that cannot be read or does not follow the format (TQ-8.2)."""


class PlanMismatch(PlanError):
    """A plan applied to a model other than the one it was fitted on (TQ-8.3)."""


def layer_file(i: int) -> str:
    return f"layer-{i:05d}.safetensors"


def site_modules(config, i: int, site: str) -> tuple[list[dict], str | None]:
    """([{"name", "rows"}], norm module name or None) of site ``site`` of layer i, in Hugging Face
    module names (TQ-8.2): the linear layers the site feeds, in the row order of the stacked
    weight, and the RMSNorm whose output the site reads (qkv, gate_up only)."""
    p = f"model.layers.{i}."
    c = config
    mods = {"qkv": [("self_attn.q_proj", c.q_dim), ("self_attn.k_proj", c.kv_dim), ("self_attn.v_proj", c.kv_dim)],
            "o": [("self_attn.o_proj", c.hidden_size)],
            "gate_up": [("mlp.gate_proj", c.intermediate_size), ("mlp.up_proj", c.intermediate_size)],
            "down": [("mlp.down_proj", c.hidden_size)]}[site]
    norm = {"qkv": "input_layernorm",
            "gate_up": "pre_feedforward_layernorm" if c.family == "gemma3" else "post_attention_layernorm"}.get(site)
    return [{"name": p + m, "rows": int(r)} for m, r in mods], (None if norm is None else p + norm)


def weight_sha256(w) -> str:
    """sha256 of a weight's float32 values, row-major, little-endian (TQ-8.3): the stacked weight
    of a site (q, k, v rows; gate, up rows), so the same digest comes from the separate modules."""
    a = np.ascontiguousarray(np.asarray(w, dtype=np.float32)).astype("<f4", copy=False)
    return hashlib.sha256(a.tobytes()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_identity(model, name: str | None) -> dict:
    """The ``model`` object of a manifest (TQ-8.2, TQ-8.3): family, layer count, norm form, the
    sha256 of the checkpoint files (when the model has a directory) and, per site, its width,
    modules and the sha256 of its stacked weight."""
    from torq_ref.model.weights import weight_files

    c = model.config
    files = {}
    if model.path is not None:
        files = {p.name: file_sha256(p) for p in weight_files(model.path)}
    sites = []
    for i in range(c.num_layers):
        for site in SITES:
            mods, norm = site_modules(c, i, site)
            w = model.site_weight(i, site)
            sites.append({"layer": i, "site": site, "width": int(w.shape[1]), "modules": mods,
                          "norm": norm, "weight_sha256": weight_sha256(w)})
    return {"name": name, "dir": None if model.path is None else str(model.path), "family": c.family,
            "num_layers": int(c.num_layers), "hidden_size": int(c.hidden_size),
            "norm_form": "one_plus_weight" if c.family == "gemma3" else "weight",
            "files_sha256": files, "sites": sites}


def _row_sites(method: str, setting: str, cfg: TorqConfig, layers: dict) -> list[dict]:
    """The per-site entries of one row (TQ-8.2) from the recorded layer keys."""
    out = []
    for i in sorted(layers):
        for site in SITES:
            keys = layers[i].get((method, site), {})
            quant = method != "fp32" and site in cfg.quant_sites
            out.append({"layer": i, "site": site, "scale": keys.get("scale"), "matrix": keys.get("matrix"),
                        "block": keys.get("block"), "act_quant": quant,
                        "weight_quant": "rtn" if quant and setting == "W4A4" else None})
    return out


class PlanRecorder:
    """The ``on_layer`` callback of the engine that writes a plan directory (TQ-8.1)."""

    def __init__(self, out_dir, methods, settings, cfg: TorqConfig):
        self.dir = Path(out_dir)
        self.cfg = cfg
        self.rows, self.skipped = [], []
        for m in methods:
            for s in (("FP32",) if m == "fp32" else tuple(settings)):
                if s == "W4A4" and weight_quant_of(m, cfg) in ("gptq", "gpfq"):
                    self.skipped.append({"method": m, "setting": s, "reason":
                                         f"{weight_quant_of(m, cfg).upper()} weights are a fit of the "
                                         "weights, not a transform; the plan format carries transforms only"})
                elif s == "W4A4" and cfg.weight_scale_rule not in (None, cfg.scale_rule):   # TQ-7.7
                    self.skipped.append({"method": m, "setting": s, "reason":
                                         "the weights' scale rule differs from the activations'; the plan "
                                         "format carries one scale rule"})
                else:
                    self.rows.append((m, s))
        self.methods = tuple(dict.fromkeys(m for m, _ in self.rows))
        self.layers: dict[int, dict] = {}          # i -> {(method, site): {part: key}}
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("layer-*.safetensors"):
            old.unlink()

    def __call__(self, model, i: int, transforms: dict, scales: dict) -> None:
        from safetensors.numpy import save_file

        from .methods import SCALED_METHODS

        tensors, keys = {}, {}
        for site in SITES:
            n = model.site_width(site)
            s = scales.get((i, site))
            if s is not None:
                tensors[f"{site}.scale"] = np.ascontiguousarray(s, dtype=np.float64)
            for method in self.methods:
                k = keys.setdefault((method, site), {})
                if s is not None and method in SCALED_METHODS:
                    k["scale"] = f"{site}.scale"
                t = transforms.get(method, {}).get(site)
                if t is None:
                    continue
                dense = t.materialize(n)
                if dense.matrix is not None:
                    k["matrix"] = f"{site}.{method}.matrix"
                    tensors[k["matrix"]] = np.ascontiguousarray(dense.matrix, dtype=np.float64)
                if dense.block is not None:
                    if dense.block_size != self.cfg.block_size:
                        raise PlanError(f"layer {i} site {site}: block rotation of size {dense.block_size}, "
                                        f"the MX block is {self.cfg.block_size}")
                    k["block"] = f"{site}.{method}.block"
                    tensors[k["block"]] = np.ascontiguousarray(dense.block, dtype=np.float64)
        save_file(tensors, str(self.dir / layer_file(i)), metadata={"format": FORMAT, "layer": str(i)})
        self.layers[i] = keys

    def finish(self, model, name: str | None, results: dict | None = None) -> Path:
        """Write plan.json (and the schema copy) once every layer is recorded; returns its path."""
        import torq_ref

        from .pipeline import versions

        n = model.config.num_layers
        if sorted(self.layers) != list(range(n)):
            raise PlanError(f"recorded layers {sorted(self.layers)}, the model has {n}")
        cfg = self.cfg
        rows = [{"method": m, "setting": s, "sites": _row_sites(m, s, cfg, self.layers)} for m, s in self.rows]
        settings = {} if results is None else results.get("settings", {})
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": model_identity(model, name),
            "mx": {"element": cfg.fmt, "scale_rule": cfg.scale_rule, "block_size": int(cfg.block_size)},
            "seed": int(cfg.seed),
            "site_order": list(SITE_ORDER),
            "provenance": {"torq_ref": torq_ref.__version__, "versions": versions(),
                           "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
                           "config": _jsonable(asdict(cfg)),
                           "windows": {k: settings.get(k) for k in ("eval_windows", "calib_windows", "window", "bos_id")}},
            "files": [{"name": layer_file(i), "sha256": file_sha256(self.dir / layer_file(i))} for i in range(n)],
            "rows": rows,
            "skipped": self.skipped,
            "engine_results": _engine_results(results, self.rows),
        }
        validate_manifest(manifest)
        path = self.dir / MANIFEST
        path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        (self.dir / SCHEMA).write_bytes(SCHEMA_PATH.read_bytes())
        return path


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return d


def _engine_results(results: dict | None, rows) -> list[dict]:
    """The NumPy engine's numbers of the exported rows (so a plan's consumer can compare)."""
    if results is None:
        return []
    want = set(rows)
    keep = ("ppl", "kld", "top1", "nll", "window_nll", "window_kld", "window_top1", "window_n")
    return [{"method": r["method"], "setting": r["setting"], **{k: r[k] for k in keep if k in r}}
            for r in results.get("results", []) if (r["method"], r["setting"]) in want]


# ---------------------------------------------------------------------------------- reading
def validate_manifest(manifest: dict) -> None:
    """PlanError unless ``manifest`` follows plan.schema.json (TQ-8.2)."""
    try:
        import jsonschema
    except ImportError:
        raise PlanError("reading a plan validates it against plan.schema.json, which needs jsonschema "
                        "(pip install jsonschema)") from None
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(manifest))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise PlanError(f"plan manifest does not follow {SCHEMA}: at {where}: {err.message}")


class Plan:
    """A plan read from disk (TQ-8.2): the manifest and lazy access to each layer's arrays."""

    def __init__(self, directory: Path, manifest: dict):
        self.dir, self.manifest = directory, manifest
        self._layer_cache: tuple[int, dict] | None = None

    @property
    def rows(self) -> list[tuple[str, str]]:
        return [(r["method"], r["setting"]) for r in self.manifest["rows"]]

    @property
    def mx(self) -> dict:
        return self.manifest["mx"]

    def row(self, method: str, setting: str) -> dict:
        for r in self.manifest["rows"]:
            if (r["method"], r["setting"]) == (method, setting):
                return r
        raise PlanError(f"the plan has no row {method} {setting}; it has "
                        f"{', '.join(f'{m} {s}' for m, s in self.rows)}")

    def layer_arrays(self, i: int) -> dict[str, np.ndarray]:
        """The arrays of layer i (float64), read with safetensors (never a pickle)."""
        if self._layer_cache is not None and self._layer_cache[0] == i:
            return self._layer_cache[1]
        from safetensors.numpy import load_file

        arrays = load_file(str(self.dir / layer_file(i)))
        self._layer_cache = (i, arrays)
        return arrays

    def site_arrays(self, entry: dict) -> dict[str, np.ndarray | None]:
        """{"scale", "matrix", "block"} arrays (or None) of one row's site entry."""
        arrays = self.layer_arrays(entry["layer"])
        out = {}
        for part in ("scale", "matrix", "block"):
            key = entry[part]
            if key is not None and key not in arrays:
                raise PlanError(f"{layer_file(entry['layer'])} has no tensor {key!r}")
            out[part] = None if key is None else arrays[key]
        return out


def load_plan(directory) -> Plan:
    """Read and check a plan directory (TQ-8.2): the manifest against the schema, every layer
    file against its sha256, and every referenced array's shape against its site's width."""
    d = Path(directory)
    path = d / MANIFEST
    if not path.is_file():
        raise PlanError(f"{d}: no {MANIFEST} (not a plan directory)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PlanError(f"{path} is not valid JSON: {err}") from None
    validate_manifest(manifest)
    if manifest["format_version"] != FORMAT_VERSION:
        raise PlanError(f"{path}: format_version {manifest['format_version']}, this reader knows {FORMAT_VERSION}")
    for f in manifest["files"]:
        p = d / f["name"]
        if not p.is_file():
            raise PlanError(f"{d}: layer file {f['name']} is missing")
        if file_sha256(p) != f["sha256"]:
            raise PlanError(f"{p}: sha256 differs from the manifest's (the file was changed or truncated)")
    plan = Plan(d, manifest)
    _check_shapes(plan)
    return plan


def _check_shapes(plan: Plan) -> None:
    widths = {(s["layer"], s["site"]): s["width"] for s in plan.manifest["model"]["sites"]}
    b = plan.mx["block_size"]
    for r in plan.manifest["rows"]:
        for e in r["sites"]:
            n = widths.get((e["layer"], e["site"]))
            if n is None:
                raise PlanError(f"row {r['method']} {r['setting']}: layer {e['layer']} site {e['site']} "
                                f"is not among the model's sites")
            a = plan.site_arrays(e)
            where = f"row {r['method']} {r['setting']}, layer {e['layer']} site {e['site']}"
            if a["scale"] is not None and a["scale"].shape != (n,):
                raise PlanError(f"{where}: scale has shape {a['scale'].shape}, the site width is {n}")
            if a["matrix"] is not None and a["matrix"].shape != (n, n):
                raise PlanError(f"{where}: matrix has shape {a['matrix'].shape}, expected ({n}, {n})")
            if a["block"] is not None and a["block"].shape not in ((b, b), (n // b, b, b)):
                raise PlanError(f"{where}: block has shape {a['block'].shape}, expected ({b}, {b}) or "
                                f"({n // b}, {b}, {b})")
            if a["scale"] is not None and e["site"] not in ("qkv", "gate_up"):
                raise PlanError(f"{where}: a scale vector at a site not fed by an RMSNorm")


def check_identity(plan: Plan, num_layers: int, site_weight, *, digest: bool = True) -> None:
    """TQ-8.3: refuse a model that is not the plan's, naming the first site that differs.

    ``site_weight(layer, site)`` gives the model's stacked weight of a site (out, n) (any array
    with ``.shape``; hashed as float32 when ``digest``)."""
    m = plan.manifest["model"]
    if num_layers != m["num_layers"]:
        raise PlanMismatch(f"the plan was fitted on a model of {m['num_layers']} layers; this model has {num_layers}")
    for s in m["sites"]:
        w = site_weight(s["layer"], s["site"])
        rows = sum(mod["rows"] for mod in s["modules"])
        where = f"layer {s['layer']} site {s['site']}"
        if tuple(w.shape) != (rows, s["width"]):
            raise PlanMismatch(f"{where}: weight shape {tuple(w.shape)}, the plan's is ({rows}, {s['width']})")
        if digest:
            got = weight_sha256(w)
            if got != s["weight_sha256"]:
                raise PlanMismatch(f"{where}: weight sha256 {got[:16]}.. differs from the plan's "
                                   f"{s['weight_sha256'][:16]}.. (other weights)")


def check_model(plan: Plan, model, *, digest: bool = True) -> None:
    """:func:`check_identity` for a torq_ref NumPy model."""
    check_identity(plan, model.config.num_layers, model.site_weight, digest=digest)


# ---------------------------------------------------------------------------------- run
def check_exportable(cfg: TorqConfig) -> None:
    """A plan carries scales of the RMSNorm-fed sites only (TQ-8.2 step 1 divides the norm): a run
    that scales the o or down site (TQ-2.17) is refused before any work, never written as a plan
    that an applier would fold into the wrong place."""
    from .scale_step import NORM_OF_SITE

    extra = [s for s in cfg.scale_sites if s not in NORM_OF_SITE]
    if extra:
        raise SettingsError(f"--export-plan: the plan format carries the scale step of qkv and gate_up "
                            f"only; this run also scales {', '.join(extra)} (--scale-sites, TQ-2.17)")


def export_run(spec, cfg: TorqConfig, out_dir, label: str | None = None, dispatch=None, **run_kw) -> dict:
    """``run(spec, cfg)`` with the plan of every row written to ``out_dir`` (``run --export-plan``,
    TQ-8.1); ``out_dir`` None is a plain run; ``run_kw`` (executor, ref_cache) go to ``pipeline.run``. Several models (``label`` given): ``out_dir/label``."""
    from .pipeline import run

    if out_dir is None:
        return run(spec, cfg, dispatch, **run_kw)
    check_exportable(cfg)
    d = Path(out_dir) / label if label else Path(out_dir)
    holder = {}

    def on_layer(model, i, transforms, scales):
        if "rec" not in holder:
            holder["rec"], holder["model"] = PlanRecorder(d, spec.methods, spec.settings, cfg), model
        holder["rec"](model, i, transforms, scales)

    results = run(spec, cfg, dispatch, on_layer=on_layer, **run_kw)
    if "rec" not in holder:
        raise SettingsError("the run built no layer; nothing to export")
    path = holder["rec"].finish(holder["model"], spec.model, results)
    print(f"plan: {path}", file=sys.stderr)
    return results
