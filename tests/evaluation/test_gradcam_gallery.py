"""The most-confidently-wrong gallery shows each image under its predicted and its true class's heatmaps."""

from __future__ import annotations

import numpy as np
from PIL import Image

from resnet_tl.evaluation.evaluate import write_eval
from resnet_tl.evaluation.html_report import render_report
from resnet_tl.evaluation.metrics import classification_metrics
from resnet_tl.inference.explain import side_by_side
from resnet_tl.inference.gradcam import explain
from resnet_tl.kerasenv import keras_module
from resnet_tl.models.classifier import build_classifier
from resnet_tl.recipe import build_recipe
from resnet_tl.runs import RunPaths

keras = keras_module()


def test_gallery_pairs_the_predicted_and_the_true_class_heatmaps(tmp_path):
    keras.utils.set_random_seed(0)
    clf = build_classifier(build_recipe({"model": {"backbone": "resnet8"}}).model, 3, 16)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 16, 16, 3)).astype(np.uint8)
    y = rng.integers(0, 3, 12)
    probs = clf.predict_on_batch(x.astype("float32"))
    result = classification_metrics(y, probs, ["a", "b", "c"], misclassified=4)
    assert result["misclassified"], "random weights on random labels get some wrong"
    paths = RunPaths(tmp_path / "run")
    (paths.root).mkdir()
    write_eval(paths.eval_dir("val"), result, x, clf)
    m = result["misclassified"][0]
    pair = Image.open(paths.eval_dir("val") / m["gradcam"])
    i, names = m["index"], ["a", "b", "c"]
    maps = [explain(clf, x[i:i + 1], names.index(m[k]))[0] for k in ("predicted", "true")]
    expected = side_by_side(x[i], [(maps[0], f"pred {m['predicted']}"), (maps[1], f"true {m['true']}")])
    assert np.abs(np.asarray(pair, dtype=int) - np.asarray(expected, dtype=int)).max() <= 1
    assert pair.size == expected.size and pair.size[0] > 2 * pair.size[1]
    html = render_report(paths)
    assert html.count("class='thumb pair") == len(result["misclassified"])
