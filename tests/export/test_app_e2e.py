"""Issue 27's "done when": the mobile recipe, trained on real-size photos, exports with every MediaPipe row passing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT
from images import photo_folder


def _cli(*args, timeout=900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "resnet_tl", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_mobile_recipe_on_real_size_photos_exports_with_mediapipe_passing(tmp_path):
    # Photos 4x the input (128x96 for 32 px), a fine texture that aliases when shrunk without antialiasing.
    data = photo_folder(tmp_path / "photos", per_class=16, w=128, h=96)
    r = _cli("train", "mobile", "--data", str(data), "--out", str(tmp_path / "runs"), "--json",
             "--set", "model.weights=none", "--set", "model.backbone=resnet8", "--set", "data.image_size=32", "--set", "data.val_split=0.5",
             "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "export.representative_samples=24",
             "--set", "schedule=[{name: all, epochs: 3, train: all, lr: 0.002}]")
    assert r.returncode == 0, r.stderr[-3000:]
    run = json.loads(r.stdout)["run_dir"]
    r = _cli("export", run, "--json")
    doc = json.loads(r.stdout)
    rows = [(a["path"], a["runtime"], a["check"], a["parity"]["agreement"], a["note"]) for a in doc["artifacts"]]
    assert r.returncode == 0, rows
    mediapipe = [a for a in doc["artifacts"] if a["runtime"] == "mediapipe"]
    assert len(mediapipe) == 2 and all(a["check"] == "passed" for a in mediapipe), rows
    # The recipe's data.resize reached MediaPipe's row: on files as on our pixels.
    assert all(a["parity"]["images"] == "files" for a in mediapipe)
