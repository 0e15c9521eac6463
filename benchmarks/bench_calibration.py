"""Abstention on a class the model never saw: kept vs set aside, with and without calibration.

For each held-out class of data/sample (4 classes, 150 images each): train a
small ResNet on the other three classes only (tiny settings, a minute or so
on a CPU), then run `predict` over the held-out class's 150 images. Every one
of them is necessarily wrong, so the ideal abstention sets all of them aside.
For each target precision P the confidence threshold is chosen on the
validation split (of the three known classes) twice:

  raw         threshold_for_precision on the model's own probabilities, applied to its own probabilities
  calibrated  predict --threshold auto --min-precision P (the run's temperature, calibrated confidences)

and the table reports how many held-out images each keeps (a confident wrong
answer) and what share of the known-class validation images each keeps.

    python benchmarks/bench_calibration.py [--data data/sample] [--held-out all|CLASS] [--size 32] [--epochs 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_tl.inference.calibration import abstain, load_calibration, threshold_for_precision  # noqa: E402
from resnet_tl.data import load_dataset  # noqa: E402
from resnet_tl.inference.predict import predict  # noqa: E402
from resnet_tl.recipe import build_recipe  # noqa: E402
from resnet_tl.models.batched import predict_probs  # noqa: E402
from resnet_tl.training.train import train  # noqa: E402

PRECISIONS = (0.9, 0.95, 0.99)


def run_one(data: Path, held_out: str, size: int, epochs: int, work: Path) -> dict:
    known = work / f"without-{held_out}"
    for cls in sorted(p.name for p in data.iterdir() if p.is_dir() and p.name != held_out):
        shutil.copytree(data / cls, known / cls)
    recipe = build_recipe({
        "name": f"without-{held_out}",
        "data": {"dir": str(known), "image_size": size, "augment": {"flip": "horizontal"}, "cache_dir": str(work / "cache")},
        "model": {"backbone": "resnet18", "weights": "none"},
        "schedule": [{"name": "scratch", "epochs": epochs, "train": "all", "lr": 0.002, "warmup_epochs": 1,
                      "decay": "cosine", "batchnorm": "train"}],
        "train": {"batch_size": 32, "precision": "float32"},
    })
    ds = load_dataset(recipe.data)
    t0 = time.time()
    result = train(recipe, out=work / "runs", name=held_out, dataset=ds)
    seconds = time.time() - t0
    run = result.run_dir
    doc = json.loads((run / "calibration.json").read_text())
    cal = load_calibration(run)
    y_val = np.asarray(ds.y_val)
    val_raw = predict_probs(result.model, ds.x_val, 32)

    files = [str(data / held_out)]
    held_probs = _full_probs(predict(run, files, top_k=len(ds.classes)), list(ds.classes))
    raw_conf = held_probs.max(1)
    rows = []
    for p in PRECISIONS:
        t_raw = threshold_for_precision(val_raw, y_val, p)
        auto = predict(run, files, top_k=1, threshold="auto", min_precision=p) if cal.threshold_for(p) is not None else None
        t_cal = auto["threshold"] if auto else None
        n = len(raw_conf)
        rows.append({
            "min_precision": p,
            "raw": {"threshold": t_raw,
                    "held_out_kept": int((raw_conf >= t_raw).sum()) if t_raw is not None else 0,
                    "val_kept": float((val_raw.max(1) >= t_raw).mean()) if t_raw is not None else 0.0},
            "calibrated": {"threshold": t_cal,
                           "held_out_kept": sum(r.get("prediction") not in (None, "unsure") for r in auto["rows"]) if auto else 0,
                           # abstain() compares confidences rounded as calibration.json stores them
                           "val_kept": float(1 - abstain(val_raw, cal, t_cal)[1].mean()) if t_cal is not None else 0.0},
            "held_out_images": n,
        })
    return {
        "held_out": held_out, "known": list(ds.classes), "n_train": len(ds.y_train), "n_val": len(y_val),
        "val_accuracy": result.metrics["accuracy"], "temperature": doc["temperature"],
        "ece_before": doc["ece_before"], "ece_after": doc["ece_after"], "train_seconds": round(seconds, 1),
        "held_out_mean_confidence": {"raw": float(raw_conf.mean()),
                                     "calibrated": float(cal.apply(held_probs).max(1).mean())},
        "thresholds": rows,
    }


def _full_probs(result: dict, classes: list[str]) -> np.ndarray:
    """(N, C) probabilities of a predict result whose top-k is every class."""
    order = {c: i for i, c in enumerate(classes)}
    rows = [r for r in result["rows"] if r["error"] is None]
    out = np.zeros((len(rows), len(classes)))
    for i, r in enumerate(rows):
        for t in r["top"]:
            out[i, order[t["label"]]] = t["probability"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/sample")
    ap.add_argument("--held-out", default="all", help="a class of --data, or all (one run per class)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    data = Path(args.data)
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    held = classes if args.held_out == "all" else [args.held_out]
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        results = [run_one(data, h, args.size, args.epochs, Path(tmp)) for h in held]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| held out | val acc | T | ECE before -> after | P | raw threshold | held-out kept (raw) | val kept (raw) | calibrated threshold | held-out kept (cal.) | val kept (cal.) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for i, t in enumerate(r["thresholds"]):
            head = (f"{r['held_out']} | {r['val_accuracy']:.3f} | {r['temperature']:.3g} | {r['ece_before']:.3f} -> {r['ece_after']:.3f}"
                    if i == 0 else " | | |")
            fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
            n = t["held_out_images"]
            print(f"| {head} | {t['min_precision']} | {fmt(t['raw']['threshold'])} | {t['raw']['held_out_kept']}/{n} | "
                  f"{t['raw']['val_kept']:.2f} | {fmt(t['calibrated']['threshold'])} | {t['calibrated']['held_out_kept']}/{n} | "
                  f"{t['calibrated']['val_kept']:.2f} |")
    for r in results:
        m = r["held_out_mean_confidence"]
        print(f"{r['held_out']}: mean top-1 confidence on the held-out images {m['raw']:.3f} raw, {m['calibrated']:.3f} calibrated; "
              f"trained in {r['train_seconds']} s on {r['n_train']} images")


if __name__ == "__main__":
    main()
