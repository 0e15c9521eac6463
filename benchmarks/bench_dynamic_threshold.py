"""Evidence for export.min_agreement_int8 (0.97) on dynamic-range TFLite models: what quantising the weights flips.

    PYTHONPATH=. python benchmarks/bench_dynamic_threshold.py [--seeds 42 1 2] [--epochs N] [--json FILE]
    PYTHONPATH=. python benchmarks/bench_dynamic_threshold.py --runs runs/quickstart-A runs/quickstart-B   # trained already

Trains the quickstart recipe (data/sample, 480 train / 120 val) once per seed,
exports float32, dynamic-range and full-int8 TFLite models with the parity check,
and records for each: top-1 agreement with Keras, accuracy of both, the gates'
outcomes, and for every flipped image Keras's own margin (top-1 minus top-2
probability): flips of near-ties are what int8 weights cause, flips of confident
images would be a broken conversion.
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

from resnet_tl.errors import ExportCheckFailed  # noqa: E402
from resnet_tl.export.exporter import export_run  # noqa: E402
from resnet_tl.fileio import atomic_write_text  # noqa: E402
from resnet_tl.recipe import load_recipe  # noqa: E402
from resnet_tl.formats.predictor import load_predictor  # noqa: E402


def one_seed(work: Path, seed: int, epochs: int | None) -> dict:
    from resnet_tl.training.train import train

    overrides = [f"train.seed={seed}"] + ([f"schedule.0.epochs={epochs}"] if epochs else [])
    t = time.time()
    run = train(load_recipe("quickstart", overrides), out=work, name=f"seed{seed}").run_dir
    return {"train_s": round(time.time() - t, 1), **analyse(run)}


def analyse(run: Path) -> dict:
    """Export `run` to float32, dynamic and int8 TFLite with the parity check; what each flipped."""
    from resnet_tl.data import load_dataset

    recipe = load_recipe(str(run / "recipe.yaml"))
    try:
        result = export_run(run, ["tflite"], ["none", "dynamic", "int8"])
    except ExportCheckFailed as e:
        result = e.result
    ds = load_dataset(recipe.data)
    ref = load_predictor(run / "model.keras")(ds.x_val)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    rows = []
    for a in result.artifacts:
        probs = load_predictor(run / "export" / a.path)(ds.x_val)
        flipped = np.flatnonzero(probs.argmax(1) != ref.argmax(1))
        rows.append({"variant": a.quantize, "check": a.check, **{k: a.parity[k] for k in ("agreement", "accuracy", "keras_accuracy")},
                     "gates": a.gates, "flips": int(len(flipped)),
                     "keras_margin_of_flips": [round(float(margin[i]), 4) for i in flipped]})
    return {"run": run.name, "seed": recipe.train.seed, "n_val": int(len(ds.y_val)),
            "keras_margin_median": round(float(np.median(margin)), 4),
            "keras_images_with_margin_below_0.1": int((margin < 0.1).sum()), "variants": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the quickstart epochs (default: the recipe's)")
    ap.add_argument("--runs", type=Path, nargs="+", default=None, help="analyse these finished quickstart runs instead of training")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.runs:
        seeds = [analyse(run) for run in args.runs]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            seeds = [one_seed(Path(tmp), s, args.epochs) for s in args.seeds]
    doc = {"machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
           "date": time.strftime("%Y-%m-%d"), "recipe": "quickstart", "seeds": seeds}
    print(json.dumps(doc, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
