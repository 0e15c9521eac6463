"""`resnet-tl predict RUN PATH... --explain OUT/` as a user runs it."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from resnet_tl.cli import app

runner = CliRunner()


def test_predict_explain_writes_an_overlay_and_the_heatmap_per_image(shared_run, shared_data, tmp_path):
    out = tmp_path / "why"
    files = sorted((shared_data / "test" / "hbar").glob("*.png"))[:3]
    res = runner.invoke(app, ["predict", str(shared_run), *map(str, files), str(tmp_path / "missing.png"), "--explain", str(out), "--json"])
    assert res.exit_code == 1, res.output  # one input failed, and says so
    doc = json.loads(res.stdout)
    assert doc["explained"] == 3 and doc["failed"] == 1 and doc["rows"][-1]["error"] == "not_found"
    plain = json.loads(runner.invoke(app, ["predict", str(shared_run), *map(str, files), "--json", "--top-k", "1"]).stdout)
    for row, expected in zip(doc["rows"], plain["rows"]):
        assert row["label"] == expected["top"][0]["label"] and abs(row["probability"] - expected["top"][0]["probability"]) < 1e-4
        heat = np.load(row["heatmap"])
        assert heat.shape == (16, 16) and heat.dtype == np.float32 and 0.0 <= heat.min() and heat.max() <= 1.0
        png = Image.open(row["overlay"])
        assert png.size == (256, 256) and png.mode == "RGB"
        # The caption box sits in the top-left corner: black behind white text.
        corner = np.asarray(png)[6:18, 4:40]
        assert (corner == 0).all(axis=-1).mean() > 0.3 and (corner > 200).all(axis=-1).any()


def test_explain_refuses_options_it_does_not_combine_with(shared_run, shared_data, tmp_path):
    res = runner.invoke(app, ["predict", str(shared_run), str(shared_data / "val"), "--explain", str(tmp_path / "o"), "--tta"])
    assert res.exit_code == 2 and "--explain: received with --tta" in res.output
