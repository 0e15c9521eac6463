"""TTA views follow training: the mirror only for a run that trained with a horizontal flip;
and TTA never meets a calibration fitted without it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from resnet_tl.cli import app
from resnet_tl.inference.tta import VIEWS, views


def _cli(*args):
    return CliRunner().invoke(app, ["predict", *map(str, args)])


@pytest.fixture(scope="module")
def left_right_model(tmp_path_factory):
    """model.onnx: uint8 (N, 16, 16, 3) -> softmax of (left half - right half) brightness; classes left, right.

    Mirror-sensitive by construction, run by onnxruntime (not our code).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((16, 2), np.float32)
    w[:8, 0], w[8:, 0] = 0.02, -0.02
    w[:, 1] = -w[:, 0]
    nodes = [helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["xf", "axes"], ["cols"], keepdims=0),  # (N, 16): mean per column
             helper.make_node("MatMul", ["cols", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "left_right", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 16, 16, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array([1, 3], np.int64), "axes"), numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = tmp_path_factory.mktemp("left_right")
    onnx.save(model, folder / "model.onnx")
    (folder / "labels.txt").write_text("left\nright\n")
    return folder / "model.onnx"


def test_tta_on_a_model_file_does_not_mirror_a_left_right_model(left_right_model, tmp_path):
    import onnxruntime as ort

    px = np.zeros((16, 16, 3), np.uint8)
    px[:, :8] = 255
    Image.fromarray(px).save(tmp_path / "bright_left.png")
    r = _cli(left_right_model, tmp_path / "bright_left.png", "--tta", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    names = [n for n in VIEWS if n != "flip"]
    assert doc["tta"] is True and doc["tta_views"] == names
    # The mean of onnxruntime's own answers over the crops: "left", surely. With the mirror
    # (the old views) it was the mean of "left" and "right", near 0.5.
    sess = ort.InferenceSession(str(left_right_model), providers=["CPUExecutionProvider"])
    v = views(px[None], tuple(names))
    expected = np.mean([sess.run(None, {"image": v[i]})[0][0] for i in range(len(names))], axis=0)
    top = doc["rows"][0]["top"][0]
    assert top["label"] == "left" and top["probability"] == pytest.approx(float(expected[0]), abs=1e-5)
    with_mirror = np.mean([sess.run(None, {"image": view})[0][0] for view in views(px[None])], axis=0)
    assert with_mirror[0] < expected[0] - 0.1


def test_a_run_mirrors_only_when_it_trained_with_a_horizontal_flip(shared_run, shared_data, tmp_path):
    image = min((shared_data / "val" / "hbar").glob("*.png"))
    recipe = yaml.safe_load((shared_run / "recipe.yaml").read_text())
    assert recipe["data"]["augment"]["flip"] == "none"
    plain = _cli(shared_run, image, "--tta", "--json")
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)["tta_views"] == [n for n in VIEWS if n != "flip"]
    # The same run, as if trained with a horizontal flip (views_for's other values: test_predict).
    run = tmp_path / "flipped"
    shutil.copytree(shared_run, run, ignore=shutil.ignore_patterns("checkpoint", "tensorboard", "eval", "plots"))
    recipe["data"]["augment"]["flip"] = "horizontal"
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    r = _cli(run, image, "--tta", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tta_views"] == list(VIEWS)


def test_tta_with_threshold_auto_is_refused_in_one_line(shared_run, shared_data):
    # The run's temperature and thresholds were fitted on single views; averaged views are less sure.
    assert (shared_run / "calibration.json").is_file()
    r = _cli(shared_run, shared_data / "val", "--tta", "--threshold", "auto", "--min-precision", "0.9")
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tta" in lines[0] and "--threshold auto" in lines[0] and "Traceback" not in r.output
    # A fixed threshold is not fitted on anything: TTA stays allowed with it.
    ok = _cli(shared_run, shared_data / "val", "--tta", "--threshold", "0.5", "--json")
    assert ok.exit_code == 0, ok.output
