"""Issue 28: what a new user meets in the first hour, run the way they run it.

Each test runs the CLI (in-process through CliRunner, or as a process where the
item is about the process: the quickstart from another folder, TensorFlow's
log noise) and checks the exact output that was wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, bars_folder, error_lines
from images import make_class_folder
from typer.testing import CliRunner

from resnet_tl.cli import app, common

runner = CliRunner()


@pytest.fixture
def width80():
    """Both consoles at 80 columns, as in a piped or 80-wide terminal."""
    saved = [(c, c._width) for c in (common.out, common.err)]
    for c, _ in saved:
        c.width = 80
    yield
    for c, w in saved:
        c._width = w


def _no_cuts(text: str) -> None:
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def _tiny_recipe(path: Path, cache: Path, epochs: int = 1) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "tiny", "data": {"image_size": 16, "augment": {"flip": "none"}, "cache_dir": str(cache)},
        "model": {"backbone": "resnet8", "weights": "none"},
        "schedule": [{"name": "all", "epochs": epochs, "train": "all", "lr": 0.003, "batchnorm": "train"}],
        "train": {"batch_size": 16, "precision": "float32"},
    }))
    return path


# ------------------------------------------------------------------ item 10
def test_version():
    from resnet_tl import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"resnet-tl {__version__}"


def test_set_without_equals_is_named_not_read_as_a_recipe():
    r = runner.invoke(app, ["train", "--set", "data.image_size", "32"])
    assert r.exit_code == 2
    (line,) = error_lines(r.output)
    assert "--set 'data.image_size': received no '='" in line
    assert "'32' was read as the RECIPE argument" in line
    assert "not a shipped recipe" not in line


def test_help_and_export_name_onnx_and_openvino():
    top = runner.invoke(app, ["--help"])
    assert "ONNX" in top.stdout and "OpenVINO" in top.stdout
    exp = runner.invoke(app, ["export", "--help"])
    assert "onnx" in exp.stdout and "openvino" in exp.stdout


def test_weights_convert_help_names_the_checkpoint_layouts():
    r = runner.invoke(app, ["weights", "convert", "--help"], env={"COLUMNS": "200"})
    text = " ".join(r.stdout.split())
    assert "torchvision's layout, which timm's resnet* models share" in text
    assert "layer1..layer4" in text and "fc.weight" in text
    assert "Example: resnet-tl weights convert hf://timm/resnet50.a1_in1k --out r50.keras" in text


def test_a_folder_that_is_not_a_run_says_so(tmp_path):
    (tmp_path / "photos").mkdir()
    for args in (["evaluate", str(tmp_path / "photos")], ["predict", str(tmp_path / "photos"), str(tmp_path)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2
        (line,) = error_lines(r.output)
        assert "not a run folder (no model.keras)" in line, line


def _zero_resnet18(path: Path) -> Path:
    """A torchvision-layout ResNet-18 state dict of zeros with a 3-class fc, as a .safetensors file."""
    import numpy as np
    from safetensors.numpy import save_file

    from resnet_tl.models.pretrained import expected_tensors

    save_file({k: np.zeros(s, np.float32) for k, s in expected_tensors("resnet18", classes=3).items()}, str(path))
    return path


def test_weights_convert_backbone_error_suggests_its_own_flag(tmp_path):
    checkpoint = _zero_resnet18(tmp_path / "r18.safetensors")
    r = runner.invoke(app, ["weights", "convert", str(checkpoint), "--out", str(tmp_path / "x.keras"), "--backbone", "resnet34"])
    assert r.exit_code == 2
    (line,) = error_lines(r.output)
    assert "--backbone: received 'resnet34'" in line and "allowed: --backbone resnet18" in line
    assert "--set" not in line


# ------------------------------------------------------------------ item 6
def test_weights_list_at_80_columns_keeps_every_name(width80):
    from resnet_tl.models.weight_sources import list_weights

    r = runner.invoke(app, ["weights", "list"])
    assert r.exit_code == 0
    _no_cuts(r.stdout)
    words = set(r.stdout.split())
    for row in list_weights():
        assert row["backbone"] in words
        assert (row["weights"] or "-") in words


def test_dry_run_at_80_columns_keeps_every_phase_name(width80):
    r = runner.invoke(app, ["train", "gradual", "--dry-run"])
    assert r.exit_code == 0
    _no_cuts(r.stdout)
    rows = json.loads(runner.invoke(app, ["train", "gradual", "--dry-run", "--json"]).stdout)
    words = set(r.stdout.replace("│", " ").split())
    for row in rows:
        assert row["name"] in words
        assert all(s in words or f"{s}," in words for s in row["stages"])


def test_epoch_lines_fold_between_figures_at_80_columns():
    from io import StringIO

    from rich.console import Console

    from resnet_tl.cli.progress import TrainProgress

    buf = StringIO()
    event = {"event": "epoch", "epoch": 12, "phase": "from_conv5", "loss": 0.123456, "accuracy": 0.9876, "val_loss": 0.2345,
             "val_accuracy": 0.9512, "lr": 0.000123, "images_per_s": 12345.6, "seconds": 123.4, "improved": True}
    TrainProgress(Console(file=buf, width=80), enabled=True)(event)
    text = buf.getvalue()
    _no_cuts(text)
    flat = " ".join(text.split())
    for figure in ("[from_conv5]", "loss 0.1235", "acc 0.9876", "val_loss 0.2345", "val_acc 0.9512", "lr 0.000123",
                   "12,346 img/s", "123.4s *"):
        assert figure in flat
        assert any(figure in line for line in text.splitlines()), f"{figure!r} split across lines:\n{text}"


# ------------------------------------------------------------------ item 1
def test_missing_relative_data_dir_says_relative_to_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["train", "--set", "data.dir=photos", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2
    (line,) = error_lines(r.output)
    assert f"data.dir 'photos' does not exist (relative to the current folder {tmp_path})" in line


@pytest.mark.slow
def test_quickstart_runs_from_a_folder_outside_the_checkout(tmp_path):
    """`resnet-tl train` from an empty folder: the shipped recipe finds the shipped sample."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "resnet_tl", "train", "--name", "q", "--json",
            # the quickstart made small: the point is where data/sample is found, not the training
            "--set", "model.backbone=resnet8", "--set", "data.image_size=16", "--set", "schedule.0.epochs=1",
            "--set", "schedule.0.warmup_epochs=0", "--set", "train.batch_size=64", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    p = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["data"]["used"] == 600 and doc["data"]["classes"] == 4
    stored = yaml.safe_load((tmp_path / "runs" / "q" / "recipe.yaml").read_text())
    assert Path(stored["data"]["dir"]) == ROOT / "data" / "sample"
    assert "data: 600 images in 4 classes" in p.stderr


# ------------------------------------------------------------------ item 4
@pytest.fixture
def offline(monkeypatch):
    """No network: every urllib request fails the way DNS does here; huggingface_hub's downloads are counted."""
    import huggingface_hub

    probes = []

    def no_network(opener, request, *args, **kwargs):
        probes.append((request.get_method(), kwargs.get("timeout")))
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr("urllib.request.OpenerDirector.open", no_network)
    calls = []
    real = huggingface_hub.hf_hub_download

    def counted(*args, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        if not kwargs.get("local_files_only"):
            raise AssertionError("a download was tried although the probe said offline")
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", counted)
    monkeypatch.setenv("KERAS_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / "no-keras-cache-here"))
    return probes


@pytest.mark.parametrize("weights, backbone, needle", [
    ("hf://timm/resnet18.not_cached_anywhere", "resnet18", "could not fetch 'hf://timm/resnet18.not_cached_anywhere' (offline?)"),
    ("imagenet", "resnet50", "could not download the ImageNet weights for 'resnet50' (offline?"),
])
def test_offline_weights_one_quick_line_and_no_run_folder(offline, shared_data, tmp_path, weights, backbone, needle):
    r = runner.invoke(app, ["train", "--data", str(shared_data), "--out", str(tmp_path / "runs"),
                            "--set", f"model.weights={weights}", "--set", f"model.backbone={backbone}"])
    assert r.exit_code == 2, r.output
    assert offline == [("HEAD", 3.0)]  # one request with a short timeout; the fixture fails any real download
    (line,) = error_lines(r.output)
    assert needle in line and "--set model.weights=" in line
    assert "Retrying" not in r.output and "Traceback" not in r.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_takes_model_weights_and_only_that(shared_run, tmp_path):
    run = Path(shutil.copytree(shared_run, tmp_path / "run"))
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "status": "interrupted"}))
    refused = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.batch_size=8"])
    assert refused.exit_code == 2
    assert "all but --set model.weights=PATH" in error_lines(refused.output)[0]
    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"")  # never read: the checkpoint holds every weight
    r = runner.invoke(app, ["train", "--resume", str(run), "--set", f"model.weights={weights}", "--json"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((run / "recipe.yaml").read_text())["model"]["weights"] == str(weights)


# ------------------------------------------------------------------ item 10: Ctrl-C
@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_does_not_claim_one(shared_data, tmp_path, monkeypatch):
    from resnet_tl import faults

    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setenv("RESNET_TL_FAULT", "batch:1:INT")
    recipe = _tiny_recipe(tmp_path / "tiny.yaml", tmp_path / "cache")
    r = runner.invoke(app, ["train", str(recipe), "--data", str(shared_data), "--out", str(tmp_path / "runs"), "--name", "x"])
    assert r.exit_code == 130, r.output
    assert "checkpoint is saved" not in r.stderr
    assert "interrupted before the first epoch ended: no checkpoint yet" in r.stderr
    assert f"resnet-tl train --resume {tmp_path / 'runs' / 'x'}" in r.stderr


# ------------------------------------------------------------------ items 2, 3
def _messy_classes(root: Path) -> Path:
    """Two easy classes, a class of 3 images, 2 broken files and one image filed under both classes."""
    bars_folder(root, n_per_class=10)
    make_class_folder(root, {"tiny": 3}, size=16)
    shutil.copy(root / "hbar" / "00.png", root / "vbar" / "also_hbar_00.png")
    (root / "hbar" / "broken.png").write_bytes(b"not a png")
    (root / "vbar" / "empty.jpg").write_bytes(b"")
    return root


@pytest.mark.slow
def test_every_command_prints_one_json_document(tmp_path, monkeypatch, shared_run):
    """Each command's --json stdout parses as one document, whatever the libraries print on the way;
    train's data summary reaches stderr in --json too (items 2 and 3)."""
    import resnet_tl.training.train as training

    real_train = training.train

    def train_that_downloads(*args, **kwargs):
        print("Downloading data from https://storage.googleapis.com/tensorflow/keras-applications/resnet/x.h5")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training, "train", train_that_downloads)  # what Keras's get_file prints
    data = _messy_classes(tmp_path / "photos")
    recipe = _tiny_recipe(tmp_path / "tiny.yaml", tmp_path / "cache")
    r = runner.invoke(app, ["train", str(recipe), "--data", str(data), "--out", str(tmp_path / "runs"), "--name", "r", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert "Downloading data from" in r.stderr
    assert doc["data"]["skipped_by_reason"] == {"not_an_image": 1, "zero_bytes": 1}
    assert doc["data"]["conflicting_labels"] == 1
    assert "skipped 2 file(s): 1 not_an_image, 1 zero_bytes" in r.stderr
    assert "class 'tiny' has only 3 usable images" in r.stderr
    assert "1 image filed under more than one class" in r.stderr
    run = doc["run_dir"]

    checkpoint = _zero_resnet18(tmp_path / "r18.safetensors")
    image = str(data / "hbar" / "01.png")
    commands = [
        ["train", "gradual", "--dry-run", "--json"],
        ["evaluate", run, "--json"],
        ["predict", run, image, "--json"],
        ["predict", str(shared_run), image, "--threshold", "auto", "--min-precision", "0.5", "--json"],
        ["export", run, "--format", "keras", "--json"],
        ["data", "check", str(data), "--json"],
        ["weights", "list", "--json"],
        ["recipes", "list", "--json"],
        ["info", "--json"],
        ["bench", str(recipe), "--steps", "2", "--batch-size", "4", "--json"],
        ["weights", "convert", str(checkpoint), "--out", str(tmp_path / "r18.keras"), "--image-size", "32", "--json"],
    ]
    for args in commands:
        res = runner.invoke(app, args)
        assert res.exit_code in (0, 2), (args, res.output)  # data check exits 2 on blocking problems
        json.loads(res.stdout)  # exactly one document: json.loads refuses anything before or after it


# ------------------------------------------------------------------ item 5
# What TensorFlow's C++ runtime and absl write before a table: "I0000 00:00:...", "E0000 ...",
# "WARNING: All log messages before absl::InitializeLog()", "failed call to cuInit", oneDNN notices.
TF_LOG = re.compile(r"^[IWEF]\d{4} |absl::|cuInit|oneDNN|tensorflow/|TF-TRT|cuda", re.M | re.I)


@pytest.mark.slow
def test_evaluate_and_predict_print_no_tensorflow_log_lines(shared_run, shared_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "ABSL", "GRPC"))}
    env["PYTHONPATH"] = str(ROOT)
    ev = subprocess.run([sys.executable, "-m", "resnet_tl", "evaluate", str(shared_run), "--out", str(tmp_path / "ev")],
                        capture_output=True, text=True, env=env)
    assert ev.returncode == 0, ev.stderr
    # Ours only: an optional warning of our own (it may wrap), then "wrote"; no TensorFlow, absl or CUDA line.
    assert re.fullmatch(rf"(warning: .*\n)?wrote {re.escape(str(tmp_path / 'ev'))}\n", ev.stderr, re.S), ev.stderr
    assert not TF_LOG.search(ev.stderr), ev.stderr
    image = next((shared_data / "test" / "hbar").glob("*.png"))
    pr = subprocess.run([sys.executable, "-m", "resnet_tl", "predict", str(shared_run), str(image)],
                        capture_output=True, text=True, env=env)
    assert pr.returncode == 0, pr.stderr
    assert pr.stderr == "", pr.stderr
    assert pr.stdout.lstrip().startswith(str(shared_run))  # the table's title is the first thing printed


# ------------------------------------------------------------------ items 6, 8: predict and export tables
def test_predict_table_at_80_columns_folds_paths_and_names_the_auto_threshold(shared_run, shared_data, tmp_path, width80):
    deep = tmp_path / ("a_long_folder_name_of_holiday_photos_" * 3) / "trip 2024"
    deep.mkdir(parents=True)
    image = shutil.copy(next((shared_data / "test" / "hbar").glob("*.png")), deep / "IMG_0001.png")
    r = runner.invoke(app, ["predict", str(shared_run), str(image), "--threshold", "auto", "--min-precision", "0.5"])
    assert r.exit_code == 0, r.output
    _no_cuts(r.stdout)
    first_cells = [line.split("│")[1].strip() for line in r.stdout.splitlines() if line.startswith("│")]
    assert "".join(first_cells).replace(" ", "") == str(image).replace(" ", "")
    doc = json.loads(runner.invoke(app, ["predict", str(shared_run), str(image), "--threshold", "auto",
                                         "--min-precision", "0.5", "--json"]).stdout)
    flat = " ".join(r.stdout.split())
    assert f"calibrated top-1 confidence below {doc['threshold']:.4g} (--threshold auto" in flat
    assert "for precision 0.5" in flat
    missing = runner.invoke(app, ["predict", str(shared_run), str(image), "--threshold", "auto"])
    assert missing.exit_code == 2
    (line,) = error_lines(missing.output)
    assert "--threshold auto: needs --min-precision P" in line and "None" not in line


def test_export_table_at_80_columns(shared_run, tmp_path, width80):
    run = shutil.copytree(shared_run, tmp_path / "run")
    r = runner.invoke(app, ["export", str(run), "--format", "keras"])
    assert r.exit_code == 0, r.output
    _no_cuts(r.stdout)
    row = next(line for line in r.stdout.splitlines() if line.lstrip().startswith("model.keras"))
    assert re.search(r"model\.keras\s+(passed|skipped)\s", row), row
    flat = " ".join(r.stdout.split())
    assert "other formats (not in this export):" in flat and "onnx (ONNX)" in flat and "openvino (OpenVINO IR)" in flat


# ------------------------------------------------------------------ item 10: ECE made worse
def test_evaluate_comments_when_temperature_scaling_made_ece_worse(shared_run, tmp_path):
    run = Path(shutil.copytree(shared_run, tmp_path / "run"))
    cal = json.loads((run / "calibration.json").read_text())
    (run / "calibration.json").write_text(json.dumps({**cal, "temperature": 20.0}))  # flattens confident, right answers
    r = runner.invoke(app, ["evaluate", str(run), "--split", "test", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    line = " ".join(r.stdout.split()).split("calibration: ")[1]
    before, after = map(float, re.search(r"ECE (\d\.\d+) -> (\d\.\d+)", line).groups())
    assert after > before
    assert "worse here: T was fitted for log-loss on the validation split, not for ECE" in line
