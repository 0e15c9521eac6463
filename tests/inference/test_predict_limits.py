"""predict on hostile input files: a decompression bomb is a row with reason too_large, never decoded."""

from __future__ import annotations

import json

import numpy as np
from images import bomb_png
from PIL import Image
from typer.testing import CliRunner

from resnet_tl.cli import app
from resnet_tl.data.decode import DEFAULT_MAX_PIXELS


def test_predict_reports_the_bomb_as_too_large_and_max_pixels_is_an_option(onnx_model, tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png(13000, 13000))
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "ok.png")
    r = CliRunner().invoke(app, ["predict", str(onnx_model), str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in doc["rows"]}
    assert rows["bomb.png"]["error"] == "too_large" and rows["ok.png"]["error"] is None
    assert doc["max_pixels"] == DEFAULT_MAX_PIXELS
    r = CliRunner().invoke(app, ["predict", str(onnx_model), str(tmp_path / "ok.png"), "--max-pixels", "255", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"][0]["error"] == "too_large"
    r = CliRunner().invoke(app, ["predict", str(onnx_model), str(tmp_path / "ok.png"), "--max-pixels", "0"])
    assert r.exit_code == 2 and "--max-pixels" in r.stderr and len(r.stderr.strip().splitlines()) == 1
