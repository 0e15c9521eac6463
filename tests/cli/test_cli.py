"""The CLI as a user meets it: help, errors, dry runs, recipes, a real train."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, bars_folder, error_lines
from typer.testing import CliRunner

from resnet_tl.cli import app

runner = CliRunner()


def test_help_imports_neither_keras_nor_tensorflow():
    code = (
        "import sys; from resnet_tl.cli import app; import resnet_tl, resnet_tl.recipe;"
        "bad = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    p = subprocess.run([sys.executable, "-m", "resnet_tl", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "train" in p.stdout


def test_cli_py_shim_runs_the_same_app():
    p = subprocess.run([sys.executable, str(ROOT / "cli.py"), "recipes", "list", "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "quickstart" in {r["name"] for r in json.loads(p.stdout)}


@pytest.mark.parametrize("args, needle", [
    (["train", "--set", "data.img_size=32"], "did you mean 'image_size'"),
    (["train", "--set", "model.backbone=resnet5"], "model.backbone: received 'resnet5'"),
    (["train", "nope.yaml"], "recipe file 'nope.yaml' not found"),
    (["train", "--data", "/no/such/folder", "--dry-run"], None),
    (["train", "--set", "schedule.0.from=conv9", "--set", "schedule.0.train=null", "--dry-run"], "schedule.0.from: received 'conv9'"),
    (["recipes", "show", "quickstrat"], "did you mean 'quickstart'"),
])
def test_user_errors_are_one_line_exit_2(args, needle):
    result = runner.invoke(app, args)
    if needle is None:  # a dry run does not look at the data
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert len(error_lines(result.output)) == 1


def test_missing_data_folder_is_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "resnet_tl", "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert str(tmp_path / "nope") in p.stderr and "Traceback" not in p.stderr


def test_dry_run_prints_the_expanded_schedule_as_json():
    result = runner.invoke(app, ["train", "gradual", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["head", "from_conv5", "from_conv4", "from_conv3", "from_conv2"]
    assert rows[0]["cached_features"] is True and rows[1]["stages"] == ["conv5", "head"]


def test_recipes_list_and_show():
    result = runner.invoke(app, ["recipes", "list"])
    assert result.exit_code == 0
    for name in ("quickstart", "two-phase", "gradual", "linear-probe", "full-finetune", "small-images", "mobile"):
        assert name in result.output
    shown = runner.invoke(app, ["recipes", "show", "mobile"])
    assert yaml.safe_load(shown.stdout)["export"]["quantize"] == ["none", "int8"]


@pytest.mark.slow
def test_train_from_the_cli_end_to_end(tmp_path):
    """A real folder, the real CLI in a subprocess, --json on stdout; then the stored recipe reproduces it."""
    bars_folder(tmp_path / "imgs", n_per_class=12)
    args = [sys.executable, "-m", "resnet_tl", "train", "small-images", "--data", str(tmp_path / "imgs"),
            "--out", str(tmp_path / "runs"), "--name", "cli", "--set", "train.epochs=4",
            "--set", "model.backbone=resnet8", "--set", "data.image_size=16", "--set", "train.batch_size=8",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--json"]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    run = Path(doc["run_dir"])
    assert run == tmp_path / "runs" / "cli"
    assert doc["epochs"] == 4
    phases = [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert phases == ["lr0.1", "lr0.1", "lr0.01", "lr0.001"]  # the paper's 91/45/46 scaled to 4 epochs: 2/1/1
    assert (run / "data_report.json").is_file()
    # The round trip needs no second process (the first one proved stdout holds only JSON): in this one.
    again = runner.invoke(app, ["train", str(run / "recipe.yaml"), "--out", str(tmp_path / "runs"), "--name", "again", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["epochs"] == 4
    assert yaml.safe_load((tmp_path / "runs" / "again" / "recipe.yaml").read_text()) == {
        **yaml.safe_load((run / "recipe.yaml").read_text())
    }
