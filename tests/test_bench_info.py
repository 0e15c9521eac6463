"""`resnet-tl bench` and `resnet-tl info`, run the way a user runs them."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from resnet_tl.cli import app
from resnet_tl.precision import Device
from resnet_tl.sysinfo import fast_mixed_precision


def test_info_json_names_versions_devices_precision_and_cache():
    res = CliRunner().invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["versions"]["keras"] and doc["versions"]["resnet-tl"]
    assert doc["backend"] == "tensorflow"
    assert doc["devices"] and doc["precision_auto"] in ("float32", "mixed_float16", "mixed_bfloat16")
    assert doc["cache_dir"].endswith("resnet-tl")


def test_fast_mixed_precision_by_hardware():
    assert fast_mixed_precision([Device("cpu", "cpu")], {"avx2"}) == []
    assert fast_mixed_precision([Device("cpu", "cpu")], {"avx512_bf16"}) == ["mixed_bfloat16"]
    assert fast_mixed_precision([Device("gpu", "T4", (7, 5))], set()) == ["mixed_float16"]
    assert fast_mixed_precision([Device("gpu", "H100", (9, 0))], set()) == ["mixed_float16", "mixed_bfloat16"]


def test_bench_json_reports_throughput_for_the_recipe(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"image_size": 16}, "model": {"backbone": "resnet20"}, "train": {"precision": "float32"}}))
    res = CliRunner().invoke(app, ["bench", str(recipe), "--steps", "2", "--batch-size", "8", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["backbone"], doc["image_size"], doc["batch_size"], doc["precision"], doc["backend"]) == ("resnet20", 16, 8, "float32", "tensorflow")
    assert doc["train_images_per_s"] > 0 and doc["inference_images_per_s"] > 0
    assert doc["device"]
