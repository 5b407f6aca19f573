"""Max-entropy micro-rotation experiments (spec/ME.md ME-5.2): ``experiment maxent-synthetic``, ``experiment maxent-real``.

Tables of identity, Hadamard and the optimized shared / per-block R on calibration tokens and on
evaluation tokens the optimizer never sees (results/maxent.md).
"""
from __future__ import annotations

from torq_ref.rotations.baselines import sylvester_hadamard
from torq_ref.rotations.maxent import (DEFAULT_BETA, DEFAULT_MAX_SWEEPS, DEFAULT_SEARCH_ROWS,
                                       MaxentReport, maxent_rotation, rotation_metrics)
from torq_ref.rotations.synthetic import heavy_tailed_activations

from .capture import capture_inputs


def compare_rotations(X_cal, X_eval, *, block_size: int = 32, beta: float = DEFAULT_BETA,
                      seed: int = 0, max_sweeps: int = DEFAULT_MAX_SWEEPS, per_block: bool = True,
                      search_rows: int | None = DEFAULT_SEARCH_ROWS) -> list[dict]:
    """Rows of the results table: identity, Hadamard, optimized shared R (and per-block R).

    The optimizer sees only X_cal (it holds out 25% of it for early stopping); X_eval is never
    seen. Metrics come from the reference path (:func:`rotation_metrics`, torq_ref.mx)."""
    nb = X_cal.shape[-1] // block_size
    rows = []

    def add(name, R, secs=None, rep=None):
        mc = rotation_metrics(X_cal, R, block_size=block_size)
        me = rotation_metrics(X_eval, R, block_size=block_size)
        rows.append({"rotation": name, "entropy_cal": mc["entropy"], "nmse_cal": mc["nmse"],
                     "entropy_eval": me["entropy"], "nmse_eval": me["nmse"], "seconds": secs,
                     "sweeps": None if rep is None else _sweeps_done(rep),
                     "stop": None if rep is None else rep.stop_reason})

    add("identity", None)
    add("hadamard", sylvester_hadamard(block_size))
    R, rep = maxent_rotation(X_cal, block_size=block_size, beta=beta, seed=seed,
                             max_sweeps=max_sweeps, search_rows=search_rows)
    add("maxent shared", R, rep.seconds, rep)
    if per_block:
        R, rep = maxent_rotation(X_cal, block_size=block_size, beta=beta, seed=seed,
                                 max_sweeps=max_sweeps, per_block=True, search_rows=search_rows)
        add(f"maxent per-block ({nb} R)", R, rep.seconds, rep)
    return rows


def _sweeps_done(rep: MaxentReport) -> str:
    if rep.per_block:
        best = [b.best_sweep for b in rep.blocks]
        return f"best {min(best)}..{max(best)}"
    return f"{len(rep.sweeps) - 1} (best {rep.best_sweep})"


def render_rows(rows: list[dict]) -> str:
    out = ["| rotation | H cal (bits) | NMSE cal | H held-out (bits) | NMSE held-out | "
           "sweeps run (best) | stop | time (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        out.append(f"| {r['rotation']} | {r['entropy_cal']:.4f} | {r['nmse_cal']:.5f} | "
                   f"{r['entropy_eval']:.4f} | {r['nmse_eval']:.5f} | {r['sweeps'] or ''} | "
                   f"{r['stop'] or ''} | {secs} |")
    return "\n".join(out)


def _print_tables(title: str, X_cal, X_eval, args) -> None:
    for beta in args.beta:
        print(f"\n### {title}, beta = {beta:g}\n", flush=True)
        rows = compare_rotations(X_cal, X_eval, beta=beta, seed=args.seed,
                                 max_sweeps=args.max_sweeps, per_block=not args.no_per_block)
        print(render_rows(rows), flush=True)


def run_synthetic(args) -> int:
    X = heavy_tailed_activations(args.tokens + args.eval_tokens, args.channels, seed=args.seed)
    print(f"Student-t(3) x log-normal channel scales, {args.channels // 64} outlier channels x30; "
          f"{args.tokens} calibration tokens (25% of them held out for early stopping), "
          f"{args.eval_tokens} evaluation tokens never seen by the optimizer.")
    _print_tables(f"synthetic {args.tokens} x {args.channels}", X[:args.tokens],
                  X[args.tokens:], args)
    return 0


def run_real(args) -> int:
    data, note = capture_inputs(args.model_dir, args.layers, args.sites, args.calib_windows,
                                args.heldout_windows)
    print(note + ".")
    for layer in args.layers:
        for site in args.sites:
            xc, xh = data[(layer, site)]
            _print_tables(f"layer {layer} {site} ({xc.shape[0]} x {xc.shape[1]})", xc, xh, args)
    return 0
