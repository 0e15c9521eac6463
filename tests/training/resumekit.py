"""What the resume tests share: the recipe, training subprocesses with fault injection, comparisons."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import bars_folder

EPOCHS = (2, 2)  # phase 0 (head only, cached features), phase 1 (everything)
BATCHES_PER_EPOCH = 3  # 48 training images / batch 16


def recipe_file(path: Path, data: Path, cache: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "resume",
        "data": {"dir": str(data), "image_size": 16, "val_split": 0.2, "cache_dir": str(cache), "augment": {"flip": "none"}},
        "model": {"backbone": "resnet8", "weights": "none"},
        "schedule": [
            {"name": "head", "epochs": EPOCHS[0], "train": "head", "lr": 0.01},
            {"name": "all", "epochs": EPOCHS[1], "train": "all", "lr": 0.003, "batchnorm": "train"},
        ],
        "train": {"batch_size": 16, "precision": "float32"},
    }))
    return path


def run_cli(*args, fault=None, check=True):
    env = dict(os.environ)
    env.pop("RESNET_TL_FAULT", None)
    if fault:
        env["RESNET_TL_FAULT"] = fault
    # Deterministic kernels so an interrupted run can match an uninterrupted one.
    env["TF_DETERMINISTIC_OPS"] = "1"
    p = subprocess.run([sys.executable, "-m", "resnet_tl", "train", *args], capture_output=True, text=True, env=env, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def history(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "history.csv").open()))


def assert_equals_reference(run: Path, reference, rel: float = 1e-3, abs_: float = 1e-4) -> None:
    """Every epoch's losses, the final metrics and the status match the uninterrupted run."""
    hist = history(run)
    ref_hist, ref_metrics = reference
    assert [int(r["epoch"]) for r in hist] == list(range(1, sum(EPOCHS) + 1))
    assert [r["phase"] for r in hist] == [r["phase"] for r in ref_hist]
    for a, b in zip(hist, ref_hist):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=rel, abs=abs_)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=rel, abs=abs_)
    if ref_metrics is not None:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["accuracy"] == pytest.approx(ref_metrics["accuracy"], abs=1e-6)
        assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=rel, abs=abs_)
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert not list(run.rglob(".*partial-*")), "temporary files left behind"


def epochs_in_checkpoint(run: Path) -> int:
    """epochs_done of last.npz (0 without one); loading it proves it is never a broken file."""
    if not (run / "checkpoint" / "last.npz").exists():
        return 0
    with np.load(run / "checkpoint" / "last.npz") as z:
        return json.loads(str(z["state"]))["epochs_done"]


def data_and_recipe(base: Path) -> tuple[Path, Path]:
    """(base, recipe): 60 bars images (48 train, 12 val) and the resume recipe, under `base`."""
    data = bars_folder(base / "images", n_per_class=30)
    return base, recipe_file(base / "recipe.yaml", data, base / "cache")
