"""timm/torchvision checkpoints: conversion proved against an independent numpy ResNet, loading, errors, CLI.

Checkpoints are made here with random weights under torchvision's key names
(reference_resnet.make_state_dict); nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from helpers import ROOT, error_lines
from safetensors.numpy import save_file
from typer.testing import CliRunner

import reference_resnet as ref
import resnet_tl.models.saving  # noqa: F401  registers Preprocess, which the saved models use
from resnet_tl.models import pretrained
from resnet_tl.models.convert import convert
from resnet_tl.models.resnets import build_backbone
from resnet_tl.cli import app
from resnet_tl.errors import UserError

runner = CliRunner()
OURS = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50v1.5"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{torchvision arch: (state dict, .safetensors path)}, written once per module."""
    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for arch in OURS:
        sd = ref.make_state_dict(arch, seed=len(arch))
        path = folder / f"{arch}.safetensors"
        save_file(sd, str(path))
        out[arch] = (sd, path)
    return out


def _logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The converted model's own layers up to the classifier, without the softmax."""
    head = model.get_layer("head")
    features = keras.Model(model.input, model.get_layer("head_pool").output)(x)
    return keras.ops.convert_to_numpy(head.get_layer("head_logits")(features))


# ------------------------------------------------------------- equality proof
@pytest.mark.parametrize("arch", list(OURS))
def test_converted_model_matches_the_reference_at_two_sizes(arch, checkpoints, tmp_path):
    sd, path = checkpoints[arch]
    rng = np.random.default_rng(7)
    for size in (32, 64):
        out = tmp_path / f"{arch}_{size}.keras"
        result = convert(str(path), out, image_size=size)
        assert result["backbone"] == OURS[arch] and result["classes"] == 1000
        model = keras.saving.load_model(out, safe_mode=True, compile=False)
        x = rng.integers(0, 256, (3, size, size, 3)).astype(np.float32)
        expected = ref.forward(sd, x, arch)
        got = _logits(model, x)
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), (arch, size)
        # The saved model's own output is the softmax of those logits.
        if arch == "resnet18":
            e = np.exp(expected - expected.max(axis=1, keepdims=True))
            np.testing.assert_allclose(model.predict(x, verbose=0), e / e.sum(axis=1, keepdims=True), atol=1e-5)


def test_every_tensor_is_loaded_or_reported(checkpoints, tmp_path):
    sd, path = checkpoints["resnet18"]
    result = convert(str(path), tmp_path / "m.keras", image_size=32)
    reported = [n for names in result["not_used"].values() for n in names]
    assert result["tensors_loaded"] + len(reported) == len(sd)
    assert set(reported) == {k for k in sd if k.endswith("num_batches_tracked")}
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["labels"][:2] == ["class_0", "class_1"] and len(sidecar["labels"]) == 1000


# ----------------------------------------------------------- fine-tune loading
def test_backbone_takes_the_checkpoint_and_drops_the_classifier(checkpoints):
    sd, path = checkpoints["resnet18"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone = build_backbone("resnet18", 32, weights=str(path))
    np.testing.assert_array_equal(backbone.get_layer("conv1_conv").get_weights()[0], sd["conv1.weight"].transpose(2, 3, 1, 0))
    gamma, beta, mean, var = backbone.get_layer("conv4_block1_0_bn").get_weights()
    np.testing.assert_array_equal(var, sd["layer3.0.downsample.1.running_var"])
    assert backbone.get_layer("conv4_block1_0_bn").epsilon == 1e-5  # torchvision's BatchNorm2d default
    text = " ".join(str(w.message) for w in caught)
    assert "2 not used (the checkpoint's 1000-class classifier; the head is new: fc." in text
    assert "20 not used (BatchNorm step counter" in text


def test_shape_mismatch_names_the_tensor_and_both_shapes(checkpoints, tmp_path):
    sd = dict(checkpoints["resnet18"][0])
    sd["layer2.1.conv1.weight"] = np.zeros((128, 128, 1, 1), np.float32)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(UserError) as e:
        build_backbone("resnet18", 32, weights=str(tmp_path / "bad.safetensors"))
    assert str(e.value) == (f"model.weights: tensor 'layer2.1.conv1.weight' of '{tmp_path / 'bad.safetensors'}' "
                            f"has shape (128, 128, 1, 1); 'resnet18' expects (128, 128, 3, 3)")


def test_unknown_tensors_are_an_error_not_silently_ignored(checkpoints, tmp_path):
    sd = dict(checkpoints["resnet18"][0])
    sd["layer1.0.se.fc1.weight"] = np.zeros((4, 64, 1, 1), np.float32)
    save_file(sd, str(tmp_path / "se.safetensors"))
    with pytest.raises(UserError, match=r"has tensors a plain 'resnet18' does not: layer1\.0\.se\.fc1\.weight"):
        build_backbone("resnet18", 32, weights=str(tmp_path / "se.safetensors"))


def test_v1_5_checkpoint_refused_for_keras_v1_resnet50(checkpoints):
    _, path = checkpoints["resnet50"]
    with pytest.raises(UserError, match=r"holds a 'resnet50v1\.5' \(torchvision and timm build v1\.5.*"
                                        r"allowed: --set model\.backbone=resnet50v1\.5$"):
        build_backbone("resnet50", 32, weights=str(path))


def test_deep_stem_is_refused(tmp_path):
    save_file({"conv1.0.weight": np.zeros((32, 3, 3, 3), np.float32)}, str(tmp_path / "d.safetensors"))
    tensors, _ = pretrained.read_checkpoint(str(tmp_path / "d.safetensors"))
    with pytest.raises(UserError, match="deep stem"):
        pretrained.infer_backbone(tensors)


def test_pth_without_torch_says_how_to_convert(tmp_path, monkeypatch):
    (tmp_path / "w.pth").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(UserError) as e:
        pretrained.read_checkpoint(str(tmp_path / "w.pth"))
    msg = str(e.value)
    assert "\n" not in msg and "pip install torch" in msg and "safetensors.torch" in msg and "w.safetensors" in msg


# ------------------------------------------------------------------- schedule
def test_freezing_a_random_backbone_warns_once():
    from resnet_tl.recipe import build_recipe
    from resnet_tl.training.schedule import expand_schedule

    stages = ("stem", "conv2", "conv3", "conv4", "conv5")
    frozen = build_recipe({"model": {"backbone": "resnet18", "weights": "none"}})  # default: head, then conv5
    with pytest.warns(UserWarning) as caught:
        expand_schedule(frozen, stages)
    assert len(caught) == 1 and "a frozen random backbone learns nothing" in str(caught[0].message)
    trained = build_recipe({"model": {"backbone": "resnet18", "weights": "none"}, "schedule": [{"train": "all"}]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expand_schedule(trained, stages)


# ------------------------------------------------------------------------ CLI
def test_weights_list_json_cites_every_accuracy():
    # A fresh process: the table is data, so listing it must not pay for Keras or TensorFlow.
    code = ("import json, sys\nfrom typer.testing import CliRunner\nfrom resnet_tl.cli import app\n"
            "r = CliRunner().invoke(app, ['weights', 'list', '--json'])\n"
            "print(json.dumps({'code': r.exit_code, 'rows': json.loads(r.stdout),"
            " 'heavy': sorted(m for m in ('keras', 'tensorflow') if m in sys.modules)}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    doc = json.loads(p.stdout)
    assert doc["code"] == 0 and doc["heavy"] == []
    rows = doc["rows"]
    assert {"resnet18", "resnet50v1.5", "resnet50"} <= {row["backbone"] for row in rows}
    assert all(row["top1_source"].startswith("https://") for row in rows if row["top1"] is not None)
    tv2 = next(row for row in rows if row["weights"] == "hf://timm/resnet50.tv2_in1k")
    assert tv2["top1"] == 80.858 and tv2["backbone"] == "resnet50v1.5"
    r18 = [row["weights"] for row in rows if row["backbone"] == "resnet18"]
    assert r18 == ["hf://timm/resnet18.tv_in1k", "hf://timm/resnet18.a1_in1k"]


def test_convert_cli_then_predict(checkpoints, tmp_path):
    from PIL import Image

    sd, path = checkpoints["resnet18"]
    (tmp_path / "labels.txt").write_text("".join(f"n{i:08d}\n" for i in range(1000)))
    r = runner.invoke(app, ["weights", "convert", str(path), "--out", str(tmp_path / "r18.keras"), "--backbone", "resnet18",
                            "--image-size", "32", "--labels", str(tmp_path / "labels.txt"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["backbone"] == "resnet18"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    p = runner.invoke(app, ["predict", str(tmp_path / "r18.keras"), str(tmp_path / "grey.png"), "--top-k", "2", "--format", "json"])
    assert p.exit_code == 0, p.output
    top = json.loads(p.stdout)["rows"][0]["top"]
    # A flat grey image stays flat when resized, so the reference sees the same pixels.
    expected = np.argsort(-ref.forward(sd, np.full((1, 32, 32, 3), 128.0), "resnet18")[0])[:2]
    assert [t["label"] for t in top] == [f"n{i:08d}" for i in expected]


def test_convert_cli_user_errors_are_one_line(checkpoints, tmp_path):
    _, path = checkpoints["resnet18"]
    r = runner.invoke(app, ["weights", "convert", str(path), "--out", str(tmp_path / "x.keras"), "--backbone", "resnet34"])
    assert r.exit_code == 2
    assert "holds a 'resnet18'" in r.output and "Traceback" not in r.output
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    r = runner.invoke(app, ["weights", "convert", str(path), "--out", str(tmp_path / "x.keras"), "--labels", str(tmp_path / "three.txt")])
    assert r.exit_code == 2 and "has 3 class names; the checkpoint's classifier has 1000" in r.output


def test_hf_reference_offline_names_the_file_to_fetch(tmp_path, monkeypatch):
    """The Hub client in its offline mode (HF_HUB_OFFLINE=1, read at call time) and an empty cache, in-process."""
    constants = pytest.importorskip("huggingface_hub.constants")  # the [test] extra has it; under CI=true a skip fails
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    r = runner.invoke(app, ["weights", "convert", "hf://timm/resnet18.a1_in1k", "--out", str(tmp_path / "r18.keras")])
    assert r.exit_code == 2, r.output
    lines = error_lines(r.output)
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors" in lines[0]
    assert "--set model.weights=/path/to/model.safetensors" in lines[0]
    assert not (tmp_path / "r18.keras").exists()


@pytest.mark.slow
def test_train_fine_tunes_from_a_safetensors_checkpoint_on_the_sample_data(checkpoints, tmp_path):
    """The real CLI: quickstart on data/sample, head-only so the backbone must still be the checkpoint's."""
    sd, path = checkpoints["resnet18"]
    args = [sys.executable, "-m", "resnet_tl", "train", "quickstart", "--data", str(ROOT / "data" / "sample"),
            "--out", str(tmp_path / "runs"), "--name", "ft", "--set", f"model.weights={path}",
            "--set", "data.image_size=32", "--set", "schedule.0.epochs=1", "--set", "schedule.0.train=head",
            "--set", "schedule.0.warmup_epochs=0", "--set", f"data.cache_dir={tmp_path / 'cache'}", "--json"]
    p = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "tensors of" in p.stderr and "loaded into 'resnet18'" in p.stderr
    assert "frozen random backbone" not in p.stderr
    doc = json.loads(p.stdout)
    assert doc["epochs"] == 1
    model = keras.saving.load_model(tmp_path / "runs" / "ft" / "model.keras", safe_mode=True, compile=False)
    np.testing.assert_array_equal(model.get_layer("resnet18").get_layer("conv1_conv").get_weights()[0],
                                  sd["conv1.weight"].transpose(2, 3, 1, 0))
    assert model.output_shape == (None, 4)  # the sample's classes, not the checkpoint's 1000


@pytest.mark.slow
def test_convert_to_a_run_folder_then_export_to_tflite(checkpoints, tmp_path):
    """Two commands from a checkpoint to a checked TFLite model."""
    from helpers import bars_folder

    _, path = checkpoints["resnet18"]
    # Files at the model's size: MediaPipe's parity row then compares runtimes, not
    # resizers (its own upscale flips near-ties of these random-checkpoint weights).
    bars_folder(tmp_path / "imgs", n_per_class=4, size=32)
    r = runner.invoke(app, ["weights", "convert", str(path), "--out", str(tmp_path / "r18"), "--image-size", "32",
                            "--data", str(tmp_path / "imgs"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run_dir"] == str(tmp_path / "r18")
    assert len((tmp_path / "r18" / "labels.txt").read_text().splitlines()) == 1000
    e = runner.invoke(app, ["export", str(tmp_path / "r18"), "--format", "tflite", "--quantize", "none", "--json"])
    assert e.exit_code == 0, e.output
    art = json.loads(e.stdout)["artifacts"][0]
    assert art["check"] == "passed" and art["parity"]["agreement"] == 1.0
    again = runner.invoke(app, ["weights", "convert", str(path), "--out", str(tmp_path / "r18")])
    assert again.exit_code == 2 and "already exists" in again.output
