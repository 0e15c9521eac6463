"""Training images/s: resnet-tl's training path vs a plain Keras `model.fit`,
ResNet-50 at 224 px on synthetic data, float32 and mixed_bfloat16.

    PYTHONPATH=. python benchmarks/bench_train.py [--batch-size 16] [--steps 6] [--warmup 2]

Each measurement runs in its own subprocess (fresh dtype policy, fresh
TensorFlow thread pools); compilation and warm-up steps are not timed.
Prints a Markdown table and one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def plain_keras(precision: str, batch: int, steps: int, warmup: int) -> float:
    """Images/s of keras.applications.ResNet50(weights=None) with model.fit on numpy arrays."""
    import numpy as np

    from resnet_tl.bench import N_CLASSES, timed_fit
    from resnet_tl.kerasenv import keras_module

    keras = keras_module()
    keras.mixed_precision.set_dtype_policy(precision)
    keras.utils.set_random_seed(42)
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=N_CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    n = batch * (warmup + steps)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 224, 224, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, N_CLASSES, n), N_CLASSES)
    return batch / timed_fit(keras, model, x, warmup, y=y, batch_size=batch, shuffle=False)


def resnet_tl_path(precision: str, batch: int, steps: int, warmup: int) -> float:
    """Images/s of resnet-tl's classifier through its own batches and fit (resnet_tl.bench)."""
    from resnet_tl.bench import benchmark
    from resnet_tl.recipe import build_recipe

    recipe = build_recipe({
        "data": {"image_size": 224},
        "model": {"backbone": "resnet50", "weights": "none"},
        "train": {"precision": precision, "batch_size": batch},
    })
    return benchmark(recipe, steps=steps, warmup=warmup, inference=False)["train_images_per_s"]


def one(args) -> None:
    fn = {"plain": plain_keras, "resnet-tl": resnet_tl_path}[args.one]
    t0 = time.time()
    ips = fn(args.precision, args.batch_size, args.steps, args.warmup)
    print(json.dumps({"path": args.one, "precision": args.precision, "batch_size": args.batch_size,
                      "images_per_s": round(ips, 2), "wall_s": round(time.time() - t0, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--one", choices=["plain", "resnet-tl"])
    ap.add_argument("--precision", default="float32")
    args = ap.parse_args()
    if args.one:
        return one(args)
    results = {}
    for precision in ("float32", "mixed_bfloat16"):
        for path in ("resnet-tl", "plain"):
            cmd = [sys.executable, __file__, "--one", path, "--precision", precision, "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps), "--warmup", str(args.warmup)]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            line = proc.stdout.strip().splitlines()[-1]
            print(line, flush=True)
            results[(path, precision)] = json.loads(line)["images_per_s"]
    print(f"\n| path | float32 img/s | mixed_bfloat16 img/s | bf16 speed-up |\n| --- | --- | --- | --- |")
    for path in ("resnet-tl", "plain"):
        f32, bf16 = results[(path, "float32")], results[(path, "mixed_bfloat16")]
        print(f"| {path} | {f32:.2f} | {bf16:.2f} | {bf16 / f32:.2f}x |")
    for precision in ("float32", "mixed_bfloat16"):
        print(f"resnet-tl / plain Keras, {precision}: {results[('resnet-tl', precision)] / results[('plain', precision)]:.2f}x")


if __name__ == "__main__":
    main()
