"""Training step time: resnet-tl's training path vs plain Keras `model.fit`,
ResNet-50 at 224 px on synthetic data, interleaved pairs.

    PYTHONPATH=. python benchmarks/bench_train.py                        # TF and JAX, float32 and mixed_bfloat16
    PYTHONPATH=. python benchmarks/bench_train.py --backend jax --precision float32 --batch-size 8 --steps 3
    PYTHONPATH=. python benchmarks/bench_train.py --variant plain-adam   # resnet-tl with one part ablated
    PYTHONPATH=. python benchmarks/bench_train.py --variant arrays+plain-adam+no-preprocess  # parts combine

One subprocess per backend builds and compiles both models for every precision
(resnet-tl: `resnet_tl.training.bench.build_trainer`, the trainer's classifier,
optimizer and uint8 batches; plain Keras: `keras.applications.ResNet50`, Adam,
float32 numpy arrays), warms them up, then runs `--pairs` rounds; a round is,
per precision, A B: `--steps` timed steps of resnet-tl, then of plain Keras
(B A in odd rounds, so neither side always runs second). float32 and bf16 take
turns in the same rounds, so the bf16 speed-ups of both sides are measured the
same way, round by round. The machine is shared with other jobs, so a load
spike lands in one round and hits both sides of it about equally; the per-
round ratio is the result, reported as median, min-max and a 95% bootstrap
interval of the median (rounds resampled): an interval that holds 1.0 means no
difference was shown. A step time is the median of the round's per-step
intervals (the first step of each `fit` call is not timed). Each step is timed
twice: wall clock, and CPU seconds of the process (all threads), which other
jobs barely move; under heavy load the CPU-time ratio is the one to read.
Prints one JSON line per round, a summary line (JSON) and a Markdown row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# resnet-tl with one part swapped for what plain Keras does (ablation).
VARIANTS = ("default", "arrays", "plain-adam", "no-preprocess")


def _parts(variant: str) -> set[str]:
    """'arrays+plain-adam' -> {'arrays', 'plain-adam'}: ablations combine."""
    parts = set(variant.split("+"))
    if not parts <= set(VARIANTS):
        raise ValueError(f"--variant: received {variant!r}; allowed: {', '.join(VARIANTS)}, joined with '+'")
    return parts


def _ablate(parts: set[str], keras) -> None:
    from resnet_tl.models import classifier as model
    from resnet_tl.training import stages

    if "plain-adam" in parts:  # Keras' Adam instead of the per-stage lr wrapper
        stages.make_optimizer = lambda cfg, schedule, mult: keras.optimizers.Adam(1e-3)
    if "no-preprocess" in parts:  # no flip, no Rescaling layer: the backbone sees the input as it is
        model.preprocess = lambda x, mode: x


def rounds(args) -> None:
    """Runs in the subprocess: build both sides for every precision, warm up, then rounds of A B per precision."""
    import keras

    from resnet_tl.training import bench, precision as precision_mod
    from resnet_tl.recipe import build_recipe

    parts = _parts(args.variant)
    _ablate(parts, keras)
    bs = args.batch_size
    # One timed step needs one untimed step before it in each fit call.
    x, y = bench.synthetic(bs * (args.steps + 1), 224)
    px, py = bench.peer_arrays(x, y)
    feeds = {}  # (precision, side) -> (model, data, fit kwargs)
    for precision in args.precision:
        recipe = build_recipe({
            "data": {"image_size": 224, "augment": {"flip": "none"}},  # plain Keras augments nothing either
            "model": {"backbone": "resnet50", "weights": "none"},
            "train": {"precision": precision, "batch_size": bs},
        })
        # Sets the global policy; each model keeps the policy it was built under,
        # so float32 and bf16 models can take turns in one process.
        setup = precision_mod.configure(recipe.train)
        ours, _, batches = bench.build_trainer(recipe, setup, x, y)
        plain = bench.build_peer(recipe, setup)
        feeds[precision, "resnet-tl"] = (ours, (px,), {"y": py, "batch_size": bs}) if "arrays" in parts else (ours, (batches,), {})
        feeds[precision, "plain"] = (plain, (px,), {"y": py, "batch_size": bs})

    def run(key):  # (wall s, CPU s) of every timed step of one fit call
        model, data, kw = feeds[key]
        cpu: list[float] = []
        wall = bench.step_times(keras, model, *data, 1, cpu=cpu, **kw)
        return wall, cpu

    for key in feeds:  # compile and warm up every model
        run(key)
    for i in range(args.pairs):
        for precision in args.precision:
            # A B in even rounds, B A in odd ones: whatever the side that runs
            # second gains or loses (warm caches, a clock ramp) cancels out.
            sides = ("resnet-tl", "plain") if i % 2 == 0 else ("plain", "resnet-tl")
            steps = {side: run((precision, side)) for side in sides}
            (aw, ac), (bw, bc) = steps["resnet-tl"], steps["plain"]
            a, b = (statistics.median(aw), statistics.median(ac)), (statistics.median(bw), statistics.median(bc))
            print(json.dumps({"round": i, "backend": keras.backend.backend(), "precision": precision, "variant": args.variant,
                              "batch_size": bs, "first": sides[0], "resnet_tl_step_s": round(a[0], 4), "plain_step_s": round(b[0], 4),
                              "resnet_tl_cpu_s": round(a[1], 4), "plain_cpu_s": round(b[1], 4),
                              "ratio": round(b[0] / a[0], 3), "cpu_ratio": round(b[1] / a[1], 3),
                              "resnet_tl_steps_s": [round(t, 4) for t in aw], "plain_steps_s": [round(t, 4) for t in bw]}), flush=True)


def bootstrap_ci(values: list[float], n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of `values` (rounds resampled with replacement)."""
    import random

    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


def machine() -> str:
    """The CPU model and how many CPUs this process may use, for the summary."""
    from resnet_tl.cpus import usable_cpus
    from resnet_tl.sysinfo import cpu_model

    return f"{cpu_model() or 'unknown CPU'}, {usable_cpus()} cores"


def run_config(args, backend: str) -> list[dict]:
    """One subprocess for `backend`: every precision asked for, interleaved round by round."""
    cmd = [sys.executable, __file__, "--rounds", "--batch-size", str(args.batch_size),
           "--steps", str(args.steps), "--pairs", str(args.pairs), "--variant", args.variant]
    for precision in args.precision:
        cmd += ["--precision", precision]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    rows = []
    for line in proc.stdout:
        if line.startswith("{"):
            print(line.strip(), flush=True)
            rows.append(json.loads(line))
    err = proc.stderr.read()
    if proc.wait():
        sys.exit(err[-3000:])
    return [summarize(args, backend, precision, [r for r in rows if r["precision"] == precision])
            for precision in args.precision]


def summarize(args, backend: str, precision: str, rows: list[dict]) -> dict:
    def med(key):
        return statistics.median(r[key] for r in rows)

    ratios, cpu_ratios = [r["ratio"] for r in rows], [r["cpu_ratio"] for r in rows]
    bs = args.batch_size
    return {
        "backend": backend, "precision": precision, "variant": args.variant, "batch_size": bs, "pairs": len(rows),
        "resnet_tl_images_per_s": round(bs / med("resnet_tl_step_s"), 2), "plain_images_per_s": round(bs / med("plain_step_s"), 2),
        "resnet_tl_images_per_cpu_s": round(bs / med("resnet_tl_cpu_s"), 2), "plain_images_per_cpu_s": round(bs / med("plain_cpu_s"), 2),
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "cpu_ratio_median": statistics.median(cpu_ratios), "cpu_ratio_min": min(cpu_ratios), "cpu_ratio_max": max(cpu_ratios),
        "ratio_ci95": bootstrap_ci(ratios), "cpu_ratio_ci95": bootstrap_ci(cpu_ratios), "cpu": machine(),
        "rounds": rows,
    }


def speedups(rows_f32: list[dict], rows_bf16: list[dict], key: str) -> tuple[float, float, float]:
    """Per-round bf16 speed-up (float32 step time / bf16 step time): median, min, max."""
    r = [a[key] / b[key] for a, b in zip(rows_f32, rows_bf16)]
    return statistics.median(r), min(r), max(r)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["tensorflow", "jax"], action="append", help="default: both")
    ap.add_argument("--precision", choices=["float32", "mixed_bfloat16"], action="append", help="default: both")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per side and round")
    ap.add_argument("--pairs", type=int, default=5, help="A B rounds")
    ap.add_argument("--variant", default="default", help=f"resnet-tl with parts ablated: {', '.join(VARIANTS)}, joined with '+'")
    ap.add_argument("--rounds", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.precision = args.precision or ["float32", "mixed_bfloat16"]
    try:  # a typo fails here, before a subprocess builds any model
        _parts(args.variant)
    except ValueError as e:
        ap.error(str(e))
    if args.rounds:
        return rounds(args)
    summaries = [s for b in args.backend or ["tensorflow", "jax"] for s in run_config(args, b)]
    print("\n| backend | precision | variant | batch | resnet-tl img/s | plain img/s | wall ratio, median (min-max) "
          "| resnet-tl img/CPU-s | plain img/CPU-s | CPU-time ratio, median (min-max) | wall ratio, 95% CI of the median |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in summaries:
        print(json.dumps({"summary": {k: v for k, v in s.items() if k != "rounds"}}), file=sys.stderr)
        print(f"| {s['backend']} | {s['precision']} | {s['variant']} | {s['batch_size']} | {s['resnet_tl_images_per_s']:.2f} | "
              f"{s['plain_images_per_s']:.2f} | {s['ratio_median']:.2f}x ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}) | "
              f"{s['resnet_tl_images_per_cpu_s']:.2f} | {s['plain_images_per_cpu_s']:.2f} | "
              f"**{s['cpu_ratio_median']:.2f}x** ({s['cpu_ratio_min']:.2f}-{s['cpu_ratio_max']:.2f}) | "
              f"{s['ratio_ci95'][0]:.2f}-{s['ratio_ci95'][1]:.2f} |")
    by = {(s["backend"], s["precision"]): s for s in summaries}
    for backend in args.backend or ["tensorflow", "jax"]:
        f32, bf16 = by.get((backend, "float32")), by.get((backend, "mixed_bfloat16"))
        if f32 and bf16:  # same process, same rounds: per-round speed-ups
            for unit, suffix in (("wall", "step_s"), ("CPU time", "cpu_s")):
                ours = speedups(f32["rounds"], bf16["rounds"], "resnet_tl_" + suffix)
                plain = speedups(f32["rounds"], bf16["rounds"], "plain_" + suffix)
                print(f"{backend}: bf16 speed-up in {unit}, median (min-max) of rounds: "
                      f"resnet-tl {ours[0]:.2f}x ({ours[1]:.2f}-{ours[2]:.2f}), "
                      f"plain Keras {plain[0]:.2f}x ({plain[1]:.2f}-{plain[2]:.2f})")


if __name__ == "__main__":
    main()
