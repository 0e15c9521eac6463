"""The same recipe trains under KERAS_BACKEND=jax, through the CLI, in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, bars_dataset
from PIL import Image

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install 'resnet-tl[jax]')")


def bars_folder(root: Path) -> Path:
    """The bars dataset as PNG files: root/<class>/<i>.png, 32 per class."""
    ds = bars_dataset(n_per_class=32, n_val_per_class=1)
    for i, (img, label) in enumerate(zip(ds.x_train, ds.y_train)):
        path = root / ds.classes[label] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    return root


def run_cli(args, env_extra, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    return subprocess.run([sys.executable, "-m", "resnet_tl", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@needs_jax
def test_the_cli_trains_under_jax_and_learns(tmp_path):
    data = bars_folder(tmp_path / "bars")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"image_size": 16, "val_split": 0.25, "cache_dir": str(tmp_path / "cache"), "augment": {"flip": "none"}},
        "model": {"backbone": "resnet8", "weights": "none"},
        "schedule": [{"name": "all", "epochs": 8, "train": "all", "lr": 3e-3, "batchnorm": "train"}],
        "train": {"batch_size": 16, "precision": "auto"},
    }))
    proc = run_cli(["train", str(recipe), "--data", str(data), "--out", str(tmp_path / "runs"), "--name", "jax", "--json"],
                   {"KERAS_BACKEND": "jax"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["backend"] == "jax" and result["precision"] == "float32"
    run = tmp_path / "runs" / "jax"
    for name in ("recipe.yaml", "model.keras", "history.csv", "metrics.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert result["metrics"]["accuracy"] >= 0.85, result  # chance is 0.5
