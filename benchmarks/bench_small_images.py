"""Time to accuracy of the `small-images` recipe (issue 26 part 6): the shipped recipe against
variants given as --set overrides, on data/sample (resized to 32 px) and scikit-learn digits at 32 px.

Each variant is one `train()` call in this process (model build, every epoch, saving and the
final report included); test accuracy is the best-epoch model on the set's test/ split
(digits) or, for data/sample (no test split), on its validation split.

    python benchmarks/bench_small_images.py [--variants shipped,previous] [--sets sample,digits] [--json OUT]

Variants: shipped (recipes/small-images.yaml as it is: the paper's steps scaled to 30 epochs),
paper (train.epochs=182: the paper's 182 epochs), patience5 (the paper's schedule, each rate
stopped at its validation plateau), previous (the recipe before issue 26's paper schedule:
30 epochs of SGD 0.1, one epoch warm-up, cosine), steps30 (shipped, spelt out), cos30 and
onecycle30 (30 epochs, one rate, the shipped weight decay). --seeds runs each with several train.seed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recipe_data import digits_folder  # noqa: E402

from resnet_tl.data import load_dataset  # noqa: E402
from resnet_tl.models.batched import predict_probs  # noqa: E402
from resnet_tl.recipe import load_recipe  # noqa: E402
from resnet_tl.sysinfo import cpu_model  # noqa: E402
from resnet_tl.training.train import train  # noqa: E402


def _fixed(phases: list[tuple[float, int]], decay: str = "constant", warmup: int = 0, weight_decay: float = 0.001) -> list[str]:
    """A fixed-length schedule (no stop rule, no train.epochs scaling): one SGD phase per (lr, epochs)."""
    rows = ", ".join(
        f"{{name: p{i}, epochs: {n}, train: all, optimizer: sgd, momentum: 0.9, weight_decay: {weight_decay}, lr: {lr}, "
        + (f"warmup_epochs: {warmup}, " if i == 0 and warmup else "") + f"decay: {decay}, batchnorm: train}}"
        for i, (lr, n) in enumerate(phases))
    return [f"schedule=[{rows}]", "train.patience=0", "train.epochs=null"]


VARIANTS = {
    "shipped": [], "paper": ["train.epochs=182"], "patience5": ["train.epochs=182", "train.patience=5"],
    # The recipe before issue 26's paper schedule:
    "previous": _fixed([(0.1, 30)], "cosine", warmup=1, weight_decay=0.0001),
    # 30-epoch budgets (the previous recipe's length) with the shipped weight decay:
    "steps30": _fixed([(0.1, 15), (0.01, 7), (0.001, 8)]),  # the paper's 91/45/46 epochs scaled to 30
    "cos30": _fixed([(0.1, 30)], "cosine", warmup=1),
    "onecycle30": _fixed([(0.1, 30)], "onecycle"),
}


def overrides(variant: str) -> list[str]:
    """A named variant, or 'set:KEY=VALUE;KEY=VALUE' (the shipped recipe with those overrides)."""
    if variant.startswith("set:"):
        return variant[4:].split(";")
    return VARIANTS[variant]


def run(variant: str, data: Path, work: Path, seed: int = 42) -> dict:
    sets = overrides(variant) + [f"data.cache_dir={work / 'cache'}", f"train.seed={seed}"]
    recipe = load_recipe("small-images", sets, data_dir=str(data))
    ds = load_dataset(recipe.data)
    t0 = time.time()
    result = train(recipe, out=work / "runs", name=re.sub(r"[^A-Za-z0-9._-]", "-", f"{variant}-{data.name}-s{seed}"), dataset=ds)
    seconds = time.time() - t0
    x, y = (ds.x_test, ds.y_test) if ds.x_test is not None and len(ds.y_test) else (ds.x_val, ds.y_val)
    acc = float(np.mean(np.argmax(predict_probs(result.model, x, 256), axis=1) == y))
    return {"variant": variant, "data": data.name, "seed": seed, "seconds": round(seconds, 1), "epochs": len(result.history),
            "best_epoch": result.best_epoch, "test_accuracy": round(acc, 4), "n_train": len(ds.y_train),
            "n_test": len(y), "test_split": "test" if x is ds.x_test else "val"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="shipped,previous", help="comma-separated; see overrides()")
    ap.add_argument("--sets", default="sample,digits")
    ap.add_argument("--seeds", default="42", help="comma-separated train.seed values (weights, shuffling, augmentation)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None, help="append one JSON line per run to this file")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-small-"))
    sets = {"sample": ROOT / "data" / "sample", "digits": work / "digits"}
    for name in a.sets.split(","):
        if name == "digits":
            digits_folder(sets["digits"], 32)
        for variant, seed in [(v, int(s)) for v in a.variants.split(",") for s in a.seeds.split(",")]:
            row = {**run(variant, sets[name], work, seed), "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d %H:%M")}
            print(json.dumps(row), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
