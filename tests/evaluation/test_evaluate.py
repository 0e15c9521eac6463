"""evaluate: metrics against a hand-computed case; eval folder, CLI and errors on a trained tiny run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from images import make_class_folder
from helpers import tiny_recipe
from resnet_tl.evaluation.metrics import classification_metrics, resolve_top_k

# ------------------------------------------------------------ fixed case
# y_true and probabilities of 8 images over classes a, b, c; by hand:
#   predictions 0 0 1 1 2 2 2 1  ->  confusion matrix (rows true, columns predicted)
#       a  b  c
#   a [ 2, 1, 0 ]   support 3, predicted 2
#   b [ 0, 1, 1 ]   support 2, predicted 3
#   c [ 0, 1, 2 ]   support 3, predicted 3
Y = [0, 0, 0, 1, 1, 2, 2, 2]
P = [
    [0.70, 0.20, 0.10],
    [0.60, 0.30, 0.10],
    [0.20, 0.70, 0.10],  # a -> b, confidence 0.7
    [0.10, 0.80, 0.10],
    [0.06, 0.04, 0.90],  # b -> c, confidence 0.9; b is not in the top 2 either
    [0.10, 0.10, 0.80],
    [0.30, 0.10, 0.60],
    [0.10, 0.50, 0.40],  # c -> b, confidence 0.5
]
CLASSES = ["a", "b", "c"]


def test_metrics_match_the_hand_computed_confusion_matrix():
    m = classification_metrics(Y, P, CLASSES, top_k=2, misclassified=10, paths=[f"img{i}.png" for i in range(8)])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 1, 2]]
    assert m["n"] == 8 and m["accuracy"] == pytest.approx(5 / 8)
    assert m["top_k"] == 2 and m["top_k_accuracy"] == pytest.approx(7 / 8)
    expected = {  # precision = tp / predicted, recall = tp / support, F1 = 2PR / (P + R)
        "a": (1.0, 2 / 3, 0.8, 3),
        "b": (1 / 3, 1 / 2, 0.4, 2),
        "c": (2 / 3, 2 / 3, 2 / 3, 3),
    }
    for row in m["per_class"]:
        p, r, f1, support = expected[row["class"]]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p, r, f1))
        assert row["support"] == support
    assert m["macro_avg"]["precision"] == pytest.approx(2 / 3)
    assert m["macro_avg"]["recall"] == pytest.approx(11 / 18)
    assert m["macro_avg"]["f1"] == pytest.approx(28 / 45)
    assert m["weighted_avg"]["precision"] == pytest.approx(17 / 24)
    assert m["weighted_avg"]["recall"] == pytest.approx(5 / 8)
    assert m["weighted_avg"]["f1"] == pytest.approx(0.65)
    p_true = np.array([0.7, 0.6, 0.2, 0.8, 0.04, 0.8, 0.6, 0.4])
    assert m["loss"] == pytest.approx(float(-np.log(p_true).mean()))
    # Three off-diagonal cells of one image each: ordered by true class, then predicted class.
    assert [(c["true"], c["predicted"], c["count"]) for c in m["most_confused"]] == [("a", "b", 1), ("b", "c", 1), ("c", "b", 1)]
    assert [c["rate"] for c in m["most_confused"]] == pytest.approx([1 / 3, 1 / 2, 1 / 3])
    wrong = m["misclassified"]
    assert [w["index"] for w in wrong] == [4, 2, 7]  # confidence 0.9, 0.7, 0.5
    assert [w["path"] for w in wrong] == ["img4.png", "img2.png", "img7.png"]
    assert (wrong[0]["true"], wrong[0]["predicted"]) == ("b", "c")
    assert wrong[0]["confidence"] == pytest.approx(0.9) and wrong[0]["true_probability"] == pytest.approx(0.04)


def test_misclassified_limit_ties_and_absent_classes():
    # A 4th class with no image and no prediction: zeros, and left out of the macro average.
    p4 = np.hstack([np.array(P), np.zeros((8, 1))])
    m = classification_metrics(Y, p4, [*CLASSES, "d"], misclassified=2)
    assert m["per_class"][3] == {"class": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_avg"]["f1"] == pytest.approx(28 / 45)
    assert [w["index"] for w in m["misclassified"]] == [4, 2]
    assert m["top_k"] is None and m["top_k_accuracy"] is None
    # Equal confidence: the earlier image first.
    tie = classification_metrics([1, 1], [[0.8, 0.2], [0.8, 0.2]], ["x", "y"])
    assert [w["index"] for w in tie["misclassified"]] == [0, 1]


def test_default_top_k():
    assert resolve_top_k(None, 5) == 5
    assert resolve_top_k(None, 4) is None
    assert resolve_top_k(3, 2) == 3


# ------------------------------------------------------- a trained run
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run on a real folder with train/ val/ test/, and a folder without test/."""
    from resnet_tl.data import load_dataset
    from resnet_tl.training.train import train

    base = tmp_path_factory.mktemp("evalrun")
    data = base / "data"
    for split, n in (("train", 10), ("val", 5), ("test", 4)):
        make_class_folder(data / split, {"cat": n, "dog": n}, size=16, seed={"train": 1, "val": 2, "test": 3}[split])
    no_test = base / "no_test"
    for split, n in (("train", 4), ("val", 3)):
        make_class_folder(no_test / split, {"cat": n, "dog": n}, size=16, seed=7)
    recipe = tiny_recipe([{"name": "head", "epochs": 1, "train": "head", "lr": 1e-2}],
                         data={"dir": str(data), "cache_dir": str(base / "cache")},
                         evaluate={"misclassified": 3})
    result = train(recipe, out=base / "runs", name="run", dataset=load_dataset(recipe.data))
    return {"run": result.run_dir, "data": data, "no_test": no_test, "base": base}


def _cli(*args):
    from resnet_tl.cli import app

    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_training_wrote_the_val_eval_and_evaluate_rewrites_it(trained):
    run = Path(trained["run"])
    folder = run / "eval" / "val"
    names = {"metrics.json", "confusion_matrix.csv", "confusion_matrix.png", "misclassified.csv"}
    assert names <= {p.name for p in folder.iterdir()}
    assert (run / "plots" / "curves.png").is_file() and (run / "report.html").is_file()
    before = (run / "report.html").stat().st_mtime_ns
    res = _cli(run, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # one JSON document, nothing else on stdout
    assert doc["split"] == "val" and doc["n"] == 10 and doc["classes"] == ["cat", "dog"]
    assert doc["out_dir"] == str(folder)
    assert (run / "report.html").stat().st_mtime_ns >= before
    stored = json.loads((folder / "metrics.json").read_text())
    assert stored["accuracy"] == doc["accuracy"] and stored["confusion_matrix"] == doc["confusion_matrix"]
    assert sum(map(sum, stored["confusion_matrix"])) == 10
    rows = list(csv.reader((folder / "confusion_matrix.csv").open()))
    assert rows[0][1:] == ["cat", "dog"] and [r[0] for r in rows[1:]] == ["cat", "dog"]
    wrong = list(csv.DictReader((folder / "misclassified.csv").open()))
    assert len(wrong) == min(3, 10 - round(doc["accuracy"] * 10))
    for w in wrong:
        assert Path(w["path"]).is_file() and w["true"] != w["predicted"]
    assert len(list((folder / "misclassified").glob("[0-9][0-9][0-9][0-9].png"))) == len(wrong)
    # a Keras run also gets each image's Grad-CAM for the predicted and the true class (issue 25)
    assert len(list((folder / "misclassified").glob("*_gradcam.png"))) == len(wrong)


def test_test_split_and_missing_test_split(trained):
    run = Path(trained["run"])
    res = _cli(run, "--split", "test", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n"] == 8
    assert (run / "eval" / "test" / "metrics.json").is_file()
    assert "eval-test" in (run / "report.html").read_text()
    res = _cli(run, "--split", "test", "--data", trained["no_test"])
    assert res.exit_code == 2
    assert "no test/ folder" in res.stderr and res.stdout == ""


def test_model_file_needs_data_and_labels(trained, tmp_path):
    model = Path(trained["run"]) / "model.keras"
    res = _cli(model)
    assert res.exit_code == 2 and "--data: required" in res.stderr
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    out = tmp_path / "out"
    res = _cli(model, "--data", trained["data"], "--labels", labels, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["n"] == 10 and (out / "metrics.json").is_file() and (out / "confusion_matrix.png").is_file()
    # Labels that do not match the data's classes: one line naming both.
    labels.write_text("cat\nbird\n")
    res = _cli(model, "--data", trained["data"], "--labels", labels, "--out", out)
    assert res.exit_code == 2 and "['cat', 'dog']" in res.stderr and "['cat', 'bird']" in res.stderr
    # Never into the data folder.
    labels.write_text("cat\ndog\n")
    res = _cli(model, "--data", trained["data"], "--labels", labels, "--out", trained["data"] / "eval")
    assert res.exit_code == 2 and "inside the data folder" in res.stderr


def test_tta_averages_the_model_over_the_views(trained, tmp_path):
    from resnet_tl.data import load_dataset
    from resnet_tl.evaluation.evaluate import evaluate
    from resnet_tl.recipe import load_recipe
    from resnet_tl.models.saving import load_keras_model
    from resnet_tl.inference.tta import VIEWS, views

    run = Path(trained["run"])
    res = _cli(run, "--tta", "--out", tmp_path / "tta", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["tta"] is True and doc["n"] == 10 and doc["seconds"] > 0
    # The same figure from the Keras model called on each view, outside evaluate.
    ds = load_dataset(load_recipe(str(run / "recipe.yaml")).data)
    model = load_keras_model(run / "model.keras")
    # The run trained with flip: none, so no mirror: the model never learnt that a mirror is the same class.
    names = [n for n in VIEWS if n != "flip"]
    v = views(ds.x_val, tuple(names))
    probs = np.mean([model.predict(v[i].astype("float32"), verbose=0) for i in range(len(names))], axis=0)
    labels = (run / "labels.txt").read_text().split()
    y = np.array([labels.index(ds.classes[c]) for c in ds.y_val])
    assert doc["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == y)))
    plain = evaluate(run, out=tmp_path / "plain")
    assert plain["tta"] is False and plain["accuracy"] != doc["accuracy"] or plain["loss"] != pytest.approx(doc["loss"])
    # The run's temperature was fitted on single views: applied to plain probabilities only.
    T = json.loads((run / "calibration.json").read_text())["temperature"]
    assert plain["calibration"]["temperature"] == T
    assert doc["calibration"]["temperature"] is None and doc["calibration"]["ece_after"] is None
    assert "fitted without TTA" in doc["calibration"]["note"]
