"""What the two-phase recipe's augmentation (flip, rotation 0.05, zoom 0.1) costs in the
training step, TensorFlow and JAX side by side, on this CPU (issue 23: goal <= 10%).

    PYTHONPATH=. python benchmarks/bench_augment.py                  # both backends, 64 px, batch 16
    PYTHONPATH=. python benchmarks/bench_augment.py --backend jax --size 32 --steps 3 --rounds 2

One subprocess per backend builds, with `resnet_tl.training.bench.build_trainer`
(the trainer's classifier, optimizer and uint8 batches), jit_compile as `train`
resolves it (`--jit true` forces XLA; TF on a CPU is 3.4x slower with it, so `auto` leaves it off there):
  none          the two-phase recipe with rotation, zoom and flip off
  two-phase     the recipe's own augmentation (keras.ops, inside the XLA step)
  keras-layers  the same augmentation as Keras's RandomFlip/RandomRotation/RandomZoom,
                as resnet-tl built it before issue 23 (Keras drops jit_compile for the whole model)
  and the augmenter alone: `fit` of augmenter -> pooled 10-unit head, against the head alone.
After a warm-up, `--rounds` rounds time `--steps` steps of each model, in an order that
rotates per round (load spikes on this shared machine hit every side about equally).
A step time is the median of a round's steps; the summary is the median over rounds of
each side's step time and of the per-round ratios. Wall and CPU seconds are both reported.
Prints one JSON line per round and a summary JSON line and Markdown rows per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("none", "two-phase", "keras-layers", "head", "augment+head")


def keras_layers_augmenter(cfg, image_size: int, seed: int):
    """The augmenter as it was before issue 23: Keras's preprocessing layers."""
    import keras
    from keras import layers

    modes = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}
    steps = [layers.RandomFlip(modes[cfg.flip], seed=seed)] if cfg.flip != "none" else []
    if cfg.rotation:
        steps.append(layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed + 1))
    if cfg.zoom:
        steps.append(layers.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="reflect", seed=seed + 2))
    return keras.Sequential([keras.Input((image_size, image_size, 3)), *steps], name="augment")


def rounds(args) -> None:
    """Runs in the subprocess for one backend."""
    import keras

    from resnet_tl.recipe import load_recipe
    from resnet_tl.training import bench
    from resnet_tl.training.augment import build_augmenter
    from resnet_tl.training.precision import configure

    size, bs = args.size, args.batch_size
    base = [f"data.image_size={size}", f"train.batch_size={bs}", f"train.jit_compile={args.jit}", "train.precision=float32"]
    recipe = load_recipe("two-phase", base)
    plain = load_recipe("two-phase", [*base, "data.augment.flip=none", "data.augment.rotation=0", "data.augment.zoom=0"])
    setup = configure(recipe.train)
    x, y = bench.synthetic(bs * (args.steps + 1), size)
    models = {"none": bench.build_trainer(plain, setup, x, y), "two-phase": bench.build_trainer(recipe, setup, x, y)}
    bench.build_augmenter = keras_layers_augmenter  # the old layers, for one model only
    try:
        models["keras-layers"] = bench.build_trainer(recipe, setup, x, y)
    finally:
        bench.build_augmenter = build_augmenter
    feeds = {name: (m, (batches,), {}) for name, (m, _, batches) in models.items()}
    onehot = keras.utils.to_categorical(y, bench.N_CLASSES)
    for name, aug in (("head", None), ("augment+head", build_augmenter(recipe.data.augment, size, 0))):
        inputs = keras.Input((size, size, 3))
        h = keras.layers.GlobalAveragePooling2D()(aug(inputs) if aug is not None else inputs)
        m = keras.Model(inputs, keras.layers.Dense(bench.N_CLASSES)(h))
        m.compile("sgd", "categorical_crossentropy", jit_compile=setup.jit_compile)
        feeds[name] = (m, (x.astype("float32"),), {"y": onehot, "batch_size": bs})
    jit = {name: bool(m.jit_compile) for name, (m, _, _) in feeds.items()}

    def run(name):
        model, data, kw = feeds[name]
        if name in ("head", "augment+head"):
            # Milliseconds per step: os.times() ticks (10 ms) are too coarse; time the whole fit.
            t0, c0 = time.perf_counter(), time.process_time()
            model.fit(*data, epochs=1, verbose=0, shuffle=False, **kw)
            n = len(data[0]) // bs
            return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
        cpu: list[float] = []
        wall = bench.step_times(keras, model, *data, 1, cpu=cpu, **kw)
        return statistics.median(wall), statistics.median(cpu)

    for name in SIDES:  # compile and warm up
        run(name)
    for i in range(args.rounds):
        order = SIDES[i % len(SIDES):] + SIDES[:i % len(SIDES)]
        times = {name: run(name) for name in order}
        print(json.dumps({"round": i, "backend": keras.backend.backend(), "size": size, "batch_size": bs, "jit_compile": jit,
                          "step_s": {k: round(v[0], 5) for k, v in times.items()},
                          "cpu_s": {k: round(v[1], 5) for k, v in times.items()}}), flush=True)


def summarize(rows: list[dict]) -> dict:
    def med(key, side):
        return statistics.median(r[key][side] for r in rows)

    def ratio(key, a, b):
        return statistics.median(r[key][a] / r[key][b] for r in rows)

    out = {"backend": rows[0]["backend"], "size": rows[0]["size"], "batch_size": rows[0]["batch_size"],
           "rounds": len(rows), "jit_compile": rows[0]["jit_compile"]}
    for key in ("step_s", "cpu_s"):
        out[key] = {side: round(med(key, side), 5) for side in SIDES}
        out[key.replace("_s", "") + "_ratios"] = {
            "two-phase / none": round(ratio(key, "two-phase", "none"), 3),
            "keras-layers / none": round(ratio(key, "keras-layers", "none"), 3),
            # The augmenter's own time as a fraction of the un-augmented training step.
            "augmenter alone / none": round(statistics.median(
                (r[key]["augment+head"] - r[key]["head"]) / r[key]["none"] for r in rows), 3),
        }
    return out


def machine() -> str:
    from resnet_tl.cpus import usable_cpus
    from resnet_tl.sysinfo import cpu_model

    return f"{cpu_model() or 'unknown CPU'}, {usable_cpus()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", action="append", choices=["tensorflow", "jax"])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jit", choices=["auto", "true"], default="auto",
                    help="train.jit_compile: auto = as `train` resolves it (XLA under JAX; TF on a CPU runs graphs without XLA)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        rounds(args)
        return
    summaries = []
    for backend in args.backend or ["tensorflow", "jax"]:
        cmd = [sys.executable, __file__, "--worker", "--size", str(args.size), "--batch-size", str(args.batch_size),
               "--steps", str(args.steps), "--rounds", str(args.rounds), "--jit", args.jit]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"{backend} worker failed:\n{proc.stderr[-3000:]}")
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        for row in rows:
            print(json.dumps(row))
        summaries.append(summarize(rows))
        print(json.dumps({"summary": summaries[-1], "machine": machine()}), flush=True)
    print("| backend | step, no aug (ms) | two-phase aug (ms) | ratio | augmenter alone / step | Keras layers (before) (ms) | ratio | jit kept (ours / Keras layers) |")
    print("|---|---|---|---|---|---|---|---|")
    for s in summaries:
        st, r = s["step_s"], s["step_ratios"]
        print(f"| {s['backend']} | {st['none'] * 1e3:.1f} | {st['two-phase'] * 1e3:.1f} | {r['two-phase / none']:.2f}x | "
              f"{r['augmenter alone / none']:.1%} | {st['keras-layers'] * 1e3:.1f} | {r['keras-layers / none']:.2f}x | "
              f"{s['jit_compile']['two-phase']} / {s['jit_compile']['keras-layers']} |")


if __name__ == "__main__":
    main()
