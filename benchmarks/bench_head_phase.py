"""Head-only phase: resnet-tl with cached features, without, and the Keras guide's frozen-base fit.

One run, same data, same backbone weights, same epochs and batch size:

  A  resnet-tl, head phase, cache_features: true  (backbone runs once)
  B  resnet-tl, head phase, cache_features: false (backbone runs every epoch)
  C  the Keras transfer-learning guide: base.trainable = False, model.fit on images

The backbone is a ResNet-18 given with --weights (a backbone .weights.h5) or,
by default, one trained from scratch on the sample data for a few epochs first,
so that its features mean something (ImageNet weights need a download).
Two timings per path: the whole job (resnet-tl: one `train()` call, model
build, saving model.keras, final evaluation and report.html included; the
guide: model build and fit) and the phase alone (resnet-tl: from the phase
start, feature extraction included, to its last epoch; the guide: `fit`).

    python benchmarks/bench_head_phase.py [--data data/sample] [--size 64] [--epochs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_tl.kerasenv import keras_module  # noqa: E402

keras = keras_module()

from resnet_tl.data import load_dataset  # noqa: E402
from resnet_tl.models.classifier import build_classifier, parts, preprocess  # noqa: E402
from resnet_tl.recipe import build_recipe  # noqa: E402
from resnet_tl.training.train import train  # noqa: E402


def pretrained_backbone(ds, size: int, out: Path) -> Path:
    """Train a ResNet-18 briefly from scratch; save its backbone weights."""
    recipe = build_recipe({
        "name": "pretrain", "data": {"image_size": size, "augment": {"flip": "horizontal"}},
        "model": {"backbone": "resnet18"},
        "schedule": [{"epochs": 6, "train": "all", "lr": 0.002, "batchnorm": "train", "decay": "cosine"}],
        "train": {"precision": "float32"},
    })
    result = train(recipe, out=out, name="pretrain", dataset=ds)
    clf = keras.saving.load_model(result.run_dir / "model.keras", safe_mode=True)
    path = out / "resnet18.weights.h5"
    parts(clf)[0].save_weights(path)
    return path


def resnet_tl_head(ds, size, weights, epochs, batch, cache, out) -> tuple[float, float, float, float]:
    recipe = build_recipe({
        "name": "head", "data": {"image_size": size, "augment": {"flip": "none"}},
        "model": {"backbone": "resnet18", "weights": str(weights)},
        "schedule": [{"epochs": epochs, "train": "head", "lr": 0.001, "cache_features": cache}],
        "train": {"batch_size": batch, "precision": "float32"},
    })
    marks = {}

    def progress(event):  # the phase starts before its features are computed
        marks.setdefault(event["event"], time.perf_counter())
        if event["event"] == "epoch":
            marks["last_epoch"] = time.perf_counter()

    t0 = time.perf_counter()
    result = train(recipe, out=out, name=f"head-cache-{cache}", dataset=ds, progress=progress)
    whole = time.perf_counter() - t0
    val = [float(row["val_accuracy"]) for row in result.history]
    return whole, marks["last_epoch"] - marks["phase"], val[-1], max(val)


def keras_guide(ds, size, weights, epochs, batch) -> tuple[float, float, float, float]:
    """The guide's recipe: frozen base called with training=False, GAP, Dense."""
    t0 = time.perf_counter()
    keras.utils.set_random_seed(42)
    clf = build_classifier(build_recipe({"model": {"backbone": "resnet18", "weights": str(weights)}}).model, len(ds.classes), size)
    base = parts(clf)[0]
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = preprocess(inputs, "torch")
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(len(ds.classes), activation="softmax")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    # Same starting head as resnet-tl's (same seed, same build), so that five
    # epochs from one starting point are compared, not two initialisations.
    dense.set_weights(clf.get_layer("head").get_layer("head_logits").get_weights())
    model.compile(keras.optimizers.Adam(0.001), "sparse_categorical_crossentropy", metrics=["accuracy"])
    xt, xv = np.asarray(ds.x_train, "float32"), np.asarray(ds.x_val, "float32")
    t_fit = time.perf_counter()
    h = model.fit(xt, ds.y_train, batch_size=batch, epochs=epochs, validation_data=(xv, ds.y_val), verbose=0)
    t_end = time.perf_counter()
    val = [float(v) for v in h.history["val_accuracy"]]
    return t_end - t0, t_end - t_fit, val[-1], max(val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/sample")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ds = load_dataset(build_recipe({"data": {"dir": args.data, "image_size": args.size}}).data)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.weights:
            weights = Path(args.weights)
        else:  # convolution weights fit any input size: pretrain cheaply at 64 px
            ds64 = load_dataset(build_recipe({"data": {"dir": args.data, "image_size": 64}}).data)
            weights = pretrained_backbone(ds64, 64, out)
        rows = {}
        for name, fn in (
            ("resnet-tl cached", lambda: resnet_tl_head(ds, args.size, weights, args.epochs, args.batch, True, out)),
            ("resnet-tl live", lambda: resnet_tl_head(ds, args.size, weights, args.epochs, args.batch, False, out)),
            ("keras guide", lambda: keras_guide(ds, args.size, weights, args.epochs, args.batch)),
        ):
            seconds, phase_seconds, last, best = fn()
            # Both rules on both sides: resnet-tl keeps its best epoch, the guide's fit ends on its last.
            rows[name] = {"seconds": round(seconds, 2), "phase_seconds": round(phase_seconds, 2),
                          "val_accuracy_last_epoch": round(last, 4), "val_accuracy_best_epoch": round(best, 4)}
    base, base_phase = rows["keras guide"]["seconds"], rows["keras guide"]["phase_seconds"]
    for r in rows.values():
        r["speedup_vs_keras_guide"] = round(base / r["seconds"], 2)
        r["phase_speedup_vs_keras_guide"] = round(base_phase / r["phase_seconds"], 2)
    report = {"data": args.data, "image_size": args.size, "epochs": args.epochs, "batch": args.batch,
              "n_train": int(len(ds.y_train)), "n_val": int(len(ds.y_val)), "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.epochs}-epoch head-only phase, ResNet-18 at {args.size} px, {report['n_train']} train / {report['n_val']} val images")
    print("whole job: model build to saved model; phase: features (if cached) + the 5 epochs (fit for the guide)")
    print(f"{'path':<18}{'whole s':>9}{'speed-up':>10}{'phase s':>9}{'speed-up':>10}{'acc last':>9}{'acc best':>9}")
    for name, r in rows.items():
        print(f"{name:<18}{r['seconds']:>9.2f}{r['speedup_vs_keras_guide']:>9.2f}x{r['phase_seconds']:>9.2f}"
              f"{r['phase_speedup_vs_keras_guide']:>9.2f}x{r['val_accuracy_last_epoch']:>9.4f}{r['val_accuracy_best_epoch']:>9.4f}")


if __name__ == "__main__":
    main()
