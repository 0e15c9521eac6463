"""Ablation of issue 26's training techniques: what each buys in test accuracy and costs in time.

Two offline datasets (benchmarks/recipe_data.py: scikit-learn digits and scikit-image texture
crops, at --size px), 3 seeds each (train.seed), one `train()` call per run; test accuracy is the
saved model's on the held-out test/ split. Rows, each the base recipe plus --set overrides:

    default   the small-images recipe shortened to one phase: ResNet-20 from scratch, SGD 0.1,
              momentum 0.9, one epoch of warm-up, cosine, flips and random crops (crop 0.6)
    +policy   data.augment.policy=randaugment          (from the augment branch, issue 26 part 1)
    +erasing  data.augment.erasing=0.25                (idem)
    +EMA      train.ema=0.99
    +lr-find  lr-find's suggestion replaces 0.1: found once per dataset (seed 0, 100 steps, its
              time reported apart), then every seed trains with it, as a user would
    all       every row above together

A row whose keys this checkout lacks is recorded as not run. Results go to --out (JSON lines,
one per run; a rerun skips runs already there), then --table prints the markdown table.

    python benchmarks/bench_recipes.py --out results_recipes.jsonl [--size 16] [--epochs 6] [--rows default,+EMA]
    python benchmarks/bench_recipes.py --out results_recipes.jsonl --table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recipe_data import digits_folder, textures_folder  # noqa: E402

from resnet_tl.data import load_dataset  # noqa: E402
from resnet_tl.errors import UserError  # noqa: E402
from resnet_tl.models.batched import predict_probs  # noqa: E402
from resnet_tl.recipe import build_recipe  # noqa: E402
from resnet_tl.sysinfo import cpu_model  # noqa: E402
from resnet_tl.training.lr_find import lr_find  # noqa: E402
from resnet_tl.training.train import train  # noqa: E402

POLICY, ERASING, EMA, FIND = (["data.augment.policy=randaugment"], ["data.augment.erasing=0.25"],
                              ["train.ema=0.99"], ["schedule.0.lr={found}"])
ROWS = {"default": [], "+policy": POLICY, "+erasing": ERASING, "+EMA": EMA, "+lr-find": FIND,
        "all": POLICY + ERASING + EMA + FIND}
# Small training sets (400 and 384 images; the full test splits, 397 and 160): 36 runs fit in
# well under an hour on 2 shared cores.
SETS = {"digits": lambda root, size: digits_folder(root, size, n_trainval=500),
        "textures": lambda root, size: textures_folder(root, size, per_class=60)}
SEEDS = (0, 1, 2)


def base(size: int, epochs: int) -> dict:
    return {
        "name": "ablation",
        "data": {"image_size": size, "augment": {"flip": "horizontal", "crop": 0.6}},
        "model": {"backbone": "resnet20", "weights": "none"},
        "schedule": [{"name": "all", "epochs": epochs, "train": "all", "optimizer": "sgd", "momentum": 0.9,
                      "weight_decay": 0.001, "lr": 0.1, "warmup_epochs": 1, "decay": "cosine", "batchnorm": "train"}],
        "train": {"batch_size": 64, "precision": "float32"},
    }


def found_rate(data: Path, size: int, epochs: int, work: Path, done: list[dict]) -> dict:
    """lr-find on the default recipe for this dataset (seed 0), once; cached in the results file."""
    for d in done:
        if d.get("kind") == "lr_find" and d["data"] == data.name and d["size"] == size:
            return d
    recipe = build_recipe(base(size, epochs), [f"data.dir={data}", f"data.cache_dir={work / 'cache'}"])
    t0 = time.time()
    r = lr_find(recipe, 0, load_dataset(recipe.data))
    return {"kind": "lr_find", "data": data.name, "size": size, "lr": float(f"{r.suggestion:.3g}"),
            "min_div_10": r.min_div_10, "steps": len(r.lrs), "seconds": round(time.time() - t0, 1)}


def run(row: str, data: Path, seed: int, size: int, epochs: int, work: Path, lr: float) -> dict:
    overrides = [o.format(found=lr) for o in ROWS[row]] + [f"train.seed={seed}", f"data.dir={data}", f"data.cache_dir={work / 'cache'}"]
    try:
        recipe = build_recipe(base(size, epochs), overrides, source=f"row {row}")
    except UserError as e:
        return {"status": "not run", "why": str(e).splitlines()[0]}
    ds = load_dataset(recipe.data)
    t0 = time.time()
    result = train(recipe, out=work / "runs", name=f"{row.strip('+')}-{data.name}-{seed}-{time.time_ns()}", dataset=ds)
    seconds = time.time() - t0
    acc = float(np.mean(np.argmax(predict_probs(result.model, ds.x_test, 256), axis=1) == ds.y_test))
    return {"status": "ok", "test_accuracy": round(acc, 4), "val_accuracy": round(result.metrics["accuracy"], 4),
            "seconds": round(seconds, 1), "best_epoch": result.best_epoch, "lr": recipe.schedule[0].lr}


def table(rows: list[dict]) -> str:
    """Markdown: per row and dataset, mean ± half-range of test accuracy over seeds, and mean seconds."""
    finds = {r["data"]: r for r in rows if r.get("kind") == "lr_find"}
    first = {}
    for r in rows:  # one run per (row, dataset, seed): the first recorded
        if "row" in r and r["status"] == "ok":
            first.setdefault((r["row"], r["data"], r["seed"]), r)
    rows = list(first.values()) + [r for r in rows if "row" in r and r["status"] != "ok"]
    sets = sorted({r["data"] for r in rows})
    head = "| row | " + " | ".join(f"{s}: test acc (mean ± spread) | {s}: s/run" for s in sets) + " |"
    lines = [head, "|" + " --- |" * (1 + 2 * len(sets))]
    for name in ROWS:
        cells = []
        for s in sets:
            got = [r for r in rows if r["row"] == name and r["data"] == s]
            ok = [r for r in got if r["status"] == "ok"]
            if not ok:
                cells += ["not run" if got else "-", "-"]
                continue
            accs = [r["test_accuracy"] for r in ok]
            spread = (max(accs) - min(accs)) / 2
            cells += [f"{statistics.mean(accs):.4f} ± {spread:.4f} (n={len(ok)})",
                      f"{statistics.mean(r['seconds'] for r in ok):.0f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for s, f in sorted(finds.items()):
        lines.append(f"\nlr-find on {s}: suggestion {f['lr']:g} (min/10 {f['min_div_10']:.3g}), {f['steps']} steps, {f['seconds']:.0f} s, once per dataset")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--work", default=None)
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if a.table:  # --out may name several files, comma-separated
        print(table([json.loads(line) for p in a.out.split(",") for line in Path(p).read_text().splitlines()]))
        return
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-recipes-"))
    for s in a.sets.split(","):
        data = SETS[s](work / s, a.size)
        found = found_rate(data, a.size, a.epochs, work, done)
        if found not in done:
            done.append(found)
            with out.open("a") as f:
                f.write(json.dumps(found) + "\n")
        for seed in SEEDS:
            for row in a.rows.split(","):
                key = (row, s, seed, a.size, a.epochs)
                if any("row" in d and (d["row"], d["data"], d["seed"], d["size"], d["epochs"]) == key and d["status"] == "ok"
                       for d in done):
                    continue
                rec = {"row": row, "data": s, "seed": seed, "size": a.size, "epochs": a.epochs,
                       **run(row, data, seed, a.size, a.epochs, work, found["lr"]),
                       "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d %H:%M")}
                print(json.dumps(rec), flush=True)
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
