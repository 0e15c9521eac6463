"""Head-only phase with augmentation on: live images against the feature cache.

bench_head_phase.py compares cached and live head phases with augmentation
off, where they agree exactly. With augmentation on they differ in what the
head sees, so this measures, side by side in one process, same data, same
backbone, same epochs and starting head:

  live     cache_features: false   a fresh augmentation of every image each epoch
  1 view   feature_cache_views: 1  unaugmented features (the behaviour before issue 13)
  auto     the default             min(epochs, 4) augmented views, one per epoch in turn

for several seeds (the seed of the augmentations and the head's initialisation).
Accuracy is the validation accuracy of the LAST epoch for every row (one
rule for all), plus the best epoch's. Phase seconds run from the phase start
(feature extraction included) to its last epoch.

    python benchmarks/bench_head_augment.py [--data data/sample] [--size 32] [--epochs 8] [--seeds 3] [--json]
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
from resnet_tl.models.classifier import parts  # noqa: E402
from resnet_tl.recipe import build_recipe  # noqa: E402
from resnet_tl.models.saving import load_keras_model  # noqa: E402
from resnet_tl.training.train import train  # noqa: E402

AUGMENT = {"flip": "horizontal", "crop": 0.6, "contrast": 0.2}
ROWS = {"live": {"cache_features": False}, "1 view": {"feature_cache_views": 1}, "auto": {}}


def pretrained_backbone(ds, size: int, out: Path) -> Path:
    """A ResNet-18 trained briefly from scratch on the same data (ImageNet weights need a download)."""
    recipe = build_recipe({
        "name": "pretrain", "data": {"image_size": size, "augment": {"flip": "horizontal"}},
        "model": {"backbone": "resnet18"},
        "schedule": [{"epochs": 4, "train": "all", "lr": 0.002, "batchnorm": "train", "decay": "cosine"}],
        "train": {"precision": "float32"},
    })
    result = train(recipe, out=out, name="pretrain", dataset=ds)
    path = out / "resnet18.weights.h5"
    parts(load_keras_model(result.run_dir / "model.keras"))[0].save_weights(path)
    return path


def head_phase(ds, size, weights, epochs, seed, extra, out, name) -> dict:
    recipe = build_recipe({
        "name": "head", "data": {"image_size": size, "augment": AUGMENT},
        "model": {"backbone": "resnet18", "weights": str(weights)},
        "schedule": [{"epochs": epochs, "train": "head", "lr": 0.001, **extra}],
        "train": {"batch_size": 32, "precision": "float32", "seed": seed},
    })
    marks = {}

    def progress(event):
        marks.setdefault(event["event"], time.perf_counter())
        if event["event"] == "epoch":
            marks["last_epoch"] = time.perf_counter()

    result = train(recipe, out=out, name=name, dataset=ds, progress=progress)
    accs = [r["val_accuracy"] for r in result.history]
    return {"last": accs[-1], "best": max(accs), "phase_seconds": marks["last_epoch"] - marks["phase"],
            "views": result.phases[0]["feature_cache_views"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/sample")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ds = load_dataset(build_recipe({"data": {"dir": args.data, "image_size": args.size}}).data)
    runs = {name: [] for name in ROWS}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        weights = pretrained_backbone(ds, args.size, out)
        for seed in range(args.seeds):
            for name, extra in ROWS.items():  # interleaved: load changes hit every row alike
                runs[name].append(head_phase(ds, args.size, weights, args.epochs, seed, extra, out, f"{name.replace(' ', '')}-{seed}"))
    rows = {}
    for name, rs in runs.items():
        rows[name] = {
            "views": rs[0]["views"],
            "val_accuracy_last_mean": round(float(np.mean([r["last"] for r in rs])), 4),
            "val_accuracy_last": [round(r["last"], 4) for r in rs],
            "val_accuracy_best_mean": round(float(np.mean([r["best"] for r in rs])), 4),
            "phase_seconds_median": round(float(np.median([r["phase_seconds"] for r in rs])), 2),
        }
    live_s = rows["live"]["phase_seconds_median"]
    for r in rows.values():
        r["phase_speedup_vs_live"] = round(live_s / r["phase_seconds_median"], 2)
    report = {"data": args.data, "image_size": args.size, "epochs": args.epochs, "seeds": args.seeds, "augment": AUGMENT,
              "n_train": int(len(ds.y_train)), "n_val": int(len(ds.y_val)), "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.epochs}-epoch head-only phase, ResNet-18 at {args.size} px, augment {AUGMENT}, {args.seeds} seeds")
    print(f"{'path':<8}{'views':>6}{'last-epoch acc':>16}{'best acc':>10}{'phase s':>9}{'vs live':>9}")
    for name, r in rows.items():
        print(f"{name:<8}{r['views']:>6}{r['val_accuracy_last_mean']:>16.4f}{r['val_accuracy_best_mean']:>10.4f}"
              f"{r['phase_seconds_median']:>9.2f}{r['phase_speedup_vs_live']:>8.2f}x")


if __name__ == "__main__":
    main()
