"""TFLite variants side by side: size and single-image latency relative to float32, accuracy vs Keras.

    PYTHONPATH=. python benchmarks/bench_tflite.py [--epochs N] [--rounds R] [--calls N]

(a) the quickstart recipe trained on data/sample (accuracy deltas: every variant
    runs over the validation split in LiteRT and is compared with the Keras model);
(b) ResNet-50 at 224 px, random weights (size and latency only; int8 calibrated
    on random pixels, so its accuracy means nothing).
Latency: LiteRT Interpreter with all CPU threads, one image per call; the
variants are timed in interleaved rounds and the median round is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_tl.export.exporter import export_run  # noqa: E402
from resnet_tl.fileio import atomic_write_text  # noqa: E402
from resnet_tl.recipe import build_recipe, dump_recipe, load_recipe  # noqa: E402
from resnet_tl.formats.predictor import load_predictor  # noqa: E402

VARIANTS = ["float32", "float16", "dynamic", "int8"]


def trained_run(work: Path, epochs: int | None) -> Path:
    from resnet_tl.training.train import train

    overrides = [f"schedule.0.epochs={epochs}"] if epochs else []
    return train(load_recipe("quickstart", overrides), out=work, name="quickstart").run_dir


def random_resnet50_run(work: Path) -> Path:
    """A run folder holding an untrained ResNet-50 classifier (10 classes, 224 px)."""
    from resnet_tl.models.classifier import build_classifier

    recipe = build_recipe({"name": "r50", "data": {"image_size": 224}, "model": {"backbone": "resnet50", "weights": "none"}})
    run = work / "resnet50"
    run.mkdir(parents=True)
    build_classifier(recipe.model, 10, 224).save(run / "model.keras")
    atomic_write_text(run / "recipe.yaml", dump_recipe(recipe))
    atomic_write_text(run / "labels.txt", "".join(f"c{i}\n" for i in range(10)))
    return run


def latencies(paths: dict[str, Path], image: np.ndarray, rounds: int, calls: int) -> dict[str, float]:
    preds = {k: load_predictor(p, batch_size=1) for k, p in paths.items()}
    for p in preds.values():
        p(image)
    per_round = {k: [] for k in preds}
    for _ in range(rounds):
        for k, p in preds.items():
            t = time.perf_counter()
            for _ in range(calls):
                p(image)
            per_round[k].append((time.perf_counter() - t) / calls * 1000)
    return {k: float(np.median(v)) for k, v in per_round.items()}


def table(run: Path, result, rounds: int, calls: int, with_accuracy: bool) -> list[dict]:
    out = run / "export"
    paths = {a.path.removeprefix("model_").removesuffix(".tflite"): out / a.path for a in result.artifacts}
    s = load_predictor(paths["float32"]).image_size
    image = np.random.default_rng(0).integers(0, 256, (1, s, s, 3), dtype=np.uint8)
    ms = latencies(paths, image, rounds, calls)
    rows = []
    for a in result.artifacts:
        k = a.path.removeprefix("model_").removesuffix(".tflite")
        row = {"variant": k, "size_mb": a.size_bytes / 1e6, "size_x": a.size_bytes / result.artifacts[0].size_bytes,
               "latency_ms": ms[k], "speedup_x": ms["float32"] / ms[k]}
        if with_accuracy:
            p = a.parity
            row.update(check=a.check, agreement=p["agreement"], accuracy=p["accuracy"], keras_accuracy=p["keras_accuracy"],
                       accuracy_delta=p["accuracy"] - p["keras_accuracy"], max_abs_diff=p["max_abs_diff"])
        rows.append(row)
    return rows


def _export_keeping_failures(run: Path, quants: list[str]):
    """The export report even when an artifact misses its threshold (that is a result here, not a crash)."""
    from resnet_tl.errors import ExportCheckFailed

    try:
        return export_run(run, ["tflite"], quants)
    except ExportCheckFailed as e:
        print(f"parity check failed: {e}", file=sys.stderr)
        return e.result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=None, help="Override the quickstart epochs (default: the recipe's).")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--json", default=None, help="Also write the figures here.")
    args = ap.parse_args()
    quants = ["none", "float16", "dynamic", "int8"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.time()
        run_a = trained_run(work, args.epochs)
        train_s = time.time() - t
        res_a = _export_keeping_failures(run_a, quants)
        a = table(run_a, res_a, args.rounds, args.calls, True)
        run_b = random_resnet50_run(work)
        rep = np.random.default_rng(1).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
        res_b = export_run(run_b, ["tflite"], quants, check=False, representative=rep)
        b = table(run_b, res_b, args.rounds, max(3, args.calls // 4), False)
    doc = {"machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
           "versions": res_a.versions, "quickstart_train_seconds": round(train_s, 1),
           "quickstart_val_images": res_a.n_check_images, "quickstart": a, "resnet50_224": b}
    print(json.dumps(doc, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
