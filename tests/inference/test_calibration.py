"""Temperature scaling, calibration error and abstention thresholds, checked
against closed forms, hand computations, brute force and scipy's optimiser."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resnet_tl.inference.calibration import (
    Calibration, calibration_of, expected_calibration_error, fit_calibration, fit_temperature, load_calibration,
    nll, reliability_curve, temperature_scale, threshold_for_precision,
)
from resnet_tl.errors import UserError


def _overconfident(n=400, c=5, seed=0):
    """Logits of a model right ~70% of the time yet ~99% sure: the textbook case for T > 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = rng.normal(0, 1, (n, c))
    right = rng.random(n) < 0.7
    pred = np.where(right, y, (y + rng.integers(1, c, n)) % c)
    z[np.arange(n), pred] += 6.0
    return z, y


def test_temperature_has_the_closed_form_optimum():
    # Two classes, every logit margin a, 3 of 4 right: the NLL minimum puts
    # sigmoid(a / T) at the accuracy 3/4, so T = a / log(3). With a = 2 log 3, T = 2.
    a = 2 * np.log(3)
    z = np.array([[a, 0.0]] * 4)
    y = np.array([0, 0, 0, 1])
    t = fit_temperature(z, y, logits=True)
    assert t == pytest.approx(2.0, rel=1e-6)
    cal = temperature_scale(z, t, logits=True)
    np.testing.assert_allclose(cal[:, 0], 0.75, rtol=1e-6)
    assert expected_calibration_error(cal, y) == pytest.approx(0.0, abs=1e-6)


def test_temperature_matches_a_brute_force_grid_and_scipy():
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    z, y = _overconfident()
    t = fit_temperature(z, y, logits=True)
    assert t > 1.5  # overconfident: flatten

    # Brute force: the NLL on a fine grid of T, computed independently with scipy's log_softmax.
    def ref_nll(T):
        return -np.mean(log_softmax(z / T, axis=1)[np.arange(len(y)), y])

    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 20001))
    values = np.array([ref_nll(T) for T in grid])
    best = grid[values.argmin()]
    assert abs(np.log(t) - np.log(best)) <= np.log(grid[1] / grid[0])
    assert ref_nll(t) <= values.min() + 1e-12
    res = minimize_scalar(ref_nll, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-10})
    assert t == pytest.approx(res.x, rel=1e-5)
    assert nll(z, y, t, logits=True) == pytest.approx(ref_nll(t), rel=1e-12)


def test_probabilities_and_logits_give_the_same_temperature():
    z, y = _overconfident(seed=1)
    p = temperature_scale(z, 1.0, logits=True)
    assert fit_temperature(p, y) == pytest.approx(fit_temperature(z, y, logits=True), rel=1e-4)
    # T = 1 changes nothing; any T keeps the predicted class.
    np.testing.assert_allclose(temperature_scale(p, 1.0), p, atol=1e-6)
    assert (temperature_scale(p, 3.0).argmax(1) == p.argmax(1)).all()


def test_no_wrong_prediction_hits_the_lower_bound_and_empty_is_one():
    p = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert fit_temperature(p, [0, 1]) == pytest.approx(0.05)
    assert fit_temperature(np.zeros((0, 3)), []) == 1.0


def test_a_temperature_on_either_bound_carries_a_warning_in_calibration_json_and_evaluate():
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    # 99% sure and right half the time: the NLL keeps falling as T grows (scipy, given room,
    # goes far past 20), so the fit stops at the upper bound: that used to be reported nowhere.
    p = np.array([[0.99, 0.01]] * 6 + [[0.01, 0.99]] * 6)
    y = np.array([0, 1] * 6)
    z = np.log(p)
    free = minimize_scalar(lambda t: -np.mean(log_softmax(z / t, axis=1)[np.arange(12), y]), bounds=(0.05, 1e4), method="bounded")
    assert free.x > 100
    doc = fit_calibration(p, y)
    assert doc["temperature"] == pytest.approx(20.0) and "upper bound 20" in doc["warning"]
    assert "lower bound 0.05" in fit_calibration(np.array([[0.7, 0.3], [0.2, 0.8]]), [0, 1])["warning"]
    z, y = _overconfident()
    assert fit_calibration(temperature_scale(z, 1.0, logits=True), y)["warning"] is None
    # evaluate's report carries it for the stored temperature (the CLI prints it on stderr).
    from resnet_tl.inference.calibration import calibration_report

    assert "upper bound" in calibration_report(p, [0, 1] * 6, 20.0)["warning"]
    assert calibration_report(p, [0, 1] * 6, 2.0)["warning"] is None


def test_ece_matches_a_hand_computation():
    # Top-1 confidences 0.9, 0.9, 0.6, 0.55, 0.3 (3 classes); right, wrong, right, right, wrong.
    probs = np.array([
        [0.9, 0.05, 0.05],   # y=0 right, bin (13/15, 14/15]
        [0.05, 0.9, 0.05],   # y=0 wrong, same bin
        [0.2, 0.6, 0.2],     # y=1 right, bin (8/15, 9/15]
        [0.55, 0.25, 0.2],   # y=0 right, bin (8/15, 9/15]
        [0.3, 0.3, 0.4],     # y=0 wrong: top-1 is class 2 at 0.4, bin (5/15, 6/15]
    ])
    y = np.array([0, 0, 1, 0, 0])
    # Bins: {0.9, 0.9} acc 0.5 conf 0.9 -> |0.4| x 2/5; {0.6, 0.55} acc 1 conf 0.575 -> 0.425 x 2/5;
    # {0.4} acc 0 conf 0.4 -> 0.4 x 1/5.
    expected = 0.4 * 2 / 5 + 0.425 * 2 / 5 + 0.4 / 5
    assert expected_calibration_error(probs, y) == pytest.approx(expected, abs=1e-12)
    curve = reliability_curve(probs, y)
    assert curve["count"][13] == 2 and curve["count"][8] == 2 and curve["count"][5] == 1 and sum(curve["count"]) == 5
    assert curve["accuracy"][13] == 0.5 and curve["confidence"][8] == pytest.approx(0.575)
    assert curve["accuracy"][0] is None
    # A confidence exactly on an edge belongs to the bin it closes (Guo et al.'s (lo, hi]).
    edge = np.array([[2 / 3, 1 / 3]])
    assert reliability_curve(edge, [0], bins=3)["count"] == [0, 1, 0]


def test_ece_matches_a_naive_loop():
    z, y = _overconfident(seed=2)
    p = temperature_scale(z, 1.0, logits=True)
    conf, pred = p.max(1).astype(np.float64), p.argmax(1)
    total = 0.0
    for m in range(15):
        lo, hi = m / 15, (m + 1) / 15
        members = [i for i in range(len(y)) if lo < conf[i] <= hi]
        if members:
            acc = np.mean([pred[i] == y[i] for i in members])
            total += len(members) / len(y) * abs(acc - np.mean(conf[members]))
    assert expected_calibration_error(p, y) == pytest.approx(total, abs=1e-9)
    # Calibration lowers it on the split it was fitted on.
    t = fit_temperature(p, y)
    assert expected_calibration_error(temperature_scale(p, t), y) < total / 2


def test_threshold_for_precision_is_the_lowest_that_reaches_it():
    # Confidences high to low with correctness: 0.95 R, 0.9 R, 0.8 W, 0.7 R, 0.6 R, 0.5 W
    conf = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5]
    right = [1, 1, 0, 1, 1, 0]
    probs = np.array([[c, 1 - c] for c in conf])
    y = np.array([0 if r else 1 for r in right])
    # Precision at t: 0.95 -> 1, 0.9 -> 1, 0.8 -> 2/3, 0.7 -> 3/4, 0.6 -> 4/5, 0.5 -> 4/6.
    assert threshold_for_precision(probs, y, 1.0) == pytest.approx(0.9)
    assert threshold_for_precision(probs, y, 0.8) == pytest.approx(0.6)  # lowest, though 0.8 and 0.7 miss it
    assert threshold_for_precision(probs, y, 0.75) == pytest.approx(0.6)
    assert threshold_for_precision(probs, y, 0.6) == pytest.approx(0.5)
    # Brute force over every candidate threshold.
    for p_min in np.linspace(0.05, 1.0, 40):
        ok = [t for t in conf if np.mean([r for c, r in zip(conf, right) if c >= t]) >= p_min]
        assert threshold_for_precision(probs, y, p_min) == (pytest.approx(min(ok)) if ok else None)
    # Unreachable, and ties that must be kept together.
    assert threshold_for_precision(np.array([[0.6, 0.4]]), [1], 0.5) is None
    tie = np.array([[0.9, 0.1], [0.9, 0.1], [0.7, 0.3]])
    assert threshold_for_precision(tie, [0, 1, 0], 0.6) == pytest.approx(0.7)  # 0.9 alone is 1/2
    with pytest.raises(UserError, match="min-precision"):
        threshold_for_precision(probs, y, 1.5)


def test_fit_calibration_round_trips_and_answers_any_precision(tmp_path):
    z, y = _overconfident(seed=3)
    p = temperature_scale(z, 1.0, logits=True)
    doc = fit_calibration(p, y)
    assert doc["temperature"] == pytest.approx(fit_temperature(p, y), rel=1e-5)
    assert doc["ece_after"] < doc["ece_before"] and doc["nll_after"] < doc["nll_before"]
    assert doc["n"] == len(y) and len(doc["validation"]["confidence"]) == len(y)
    cal = calibration_of(json.loads(json.dumps(doc)))
    calibrated = temperature_scale(p, doc["temperature"])
    for p_min in (0.7, 0.83, 0.9):
        assert cal.threshold_for(p_min) == pytest.approx(threshold_for_precision(calibrated, y, p_min), abs=2e-6)
    row = next(r for r in doc["thresholds"] if r["min_precision"] == 0.9)
    assert row["precision"] >= 0.9 and 0 < row["coverage"] < 1
    # Without validation confidences (a model file's sidecar) the grid answers, rounding up.
    grid_only = Calibration(doc["temperature"], thresholds={r["min_precision"]: r["threshold"] for r in doc["thresholds"]})
    assert grid_only.threshold_for(0.9) == row["threshold"]
    assert grid_only.threshold_for(0.92) == next(r["threshold"] for r in doc["thresholds"] if r["min_precision"] == 0.95)
    np.testing.assert_allclose(cal.apply(p), calibrated, atol=1e-6)


def test_load_calibration_of_a_run_and_a_model_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: t\n")
    assert load_calibration(run) is None
    z, y = _overconfident(seed=4)
    doc = fit_calibration(temperature_scale(z, 1.0, logits=True), y)
    (run / "calibration.json").write_text(json.dumps(doc))
    assert load_calibration(run).temperature == doc["temperature"]
    model = tmp_path / "model_float32.tflite"
    model.write_bytes(b"not read")
    assert load_calibration(model) is None
    (tmp_path / "model_float32.json").write_text(json.dumps({"temperature": 1.7, "confidence_thresholds": [{"min_precision": 0.9, "threshold": 0.8}]}))
    cal = load_calibration(model)
    assert cal.temperature == 1.7 and cal.threshold_for(0.9) == 0.8
    (tmp_path / "model_float32.json").write_text(json.dumps({"temperature": -1}))
    with pytest.raises(UserError, match="temperature"):
        load_calibration(model)


# ------------------------------------------------------- a trained run
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run on the bars folder (real files, so evaluate and predict read them).

    Its validation split can never be perfect, whatever training does: it holds
    CONFLICTS identical grey images filed under both classes, and a model gives
    one image one answer, so exactly one of each pair is wrong. (A fixture that
    relied on 2 epochs being "imperfect but not perfect" broke twice.)
    """
    from helpers import bars_folder, tiny_recipe
    from PIL import Image

    from resnet_tl.data import load_dataset
    from resnet_tl.training.train import train

    base = tmp_path_factory.mktemp("calibration")
    data = base / "data"
    bars_folder(data / "train", n_per_class=40, seed=0)
    bars_folder(data / "val", n_per_class=8, seed=1)
    for i in range(CONFLICTS):
        grey = Image.fromarray(np.full((16, 16, 3), 60 + 20 * i, np.uint8))
        for cls in ("hbar", "vbar"):
            grey.save(data / "val" / cls / f"grey_{i}.png")
    # shared_run's schedule: it tells every bar apart (2 epochs at 3e-4 had become a model that
    # answers one class), so the greys are the wrong images, and the least sure ones.
    recipe = tiny_recipe([{"name": "head", "epochs": 1, "train": "head", "lr": 1e-2},
                          {"name": "all", "epochs": 4, "train": "all", "lr": 3e-3, "batchnorm": "train"}],
                         data={"dir": str(data), "cache_dir": str(base / "cache")})
    ds = load_dataset(recipe.data)
    run = train(recipe, out=base / "runs", name="run", dataset=ds).run_dir
    return {"run": run, "data": data, "ds": ds, "base": base, "n_files": 2 * (40 + 8 + CONFLICTS)}


CONFLICTS = 3


def _precision_curve(conf, correct):
    """(precision of the k most confident, k at the end of each tie), by hand: sorted, cumulated."""
    order = np.argsort(-np.asarray(conf), kind="stable")
    c, ok = np.asarray(conf)[order], np.asarray(correct, bool)[order]
    precision = np.cumsum(ok) / np.arange(1, len(c) + 1)
    ends = [k for k in range(len(c)) if k == len(c) - 1 or c[k] != c[k + 1]]
    return precision, ends


def _val_probs(trained):
    import keras

    model = keras.saving.load_model(trained["run"] / "model.keras")
    return np.asarray(model.predict(np.asarray(trained["ds"].x_val, np.float32), verbose=0), np.float64)


def _cli(*args):
    from typer.testing import CliRunner

    from resnet_tl.cli import app

    return CliRunner().invoke(app, list(map(str, args)))


@pytest.mark.slow
def test_training_writes_calibration_json_fitted_on_the_validation_split(trained):
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    doc = json.loads((trained["run"] / "calibration.json").read_text())
    y = np.asarray(trained["ds"].y_val)
    probs = _val_probs(trained)  # the saved model, run again: independent of what train() kept in memory
    assert doc["n"] == len(y) and len(doc["validation"]["correct"]) == len(y)
    z = np.log(np.clip(probs, 1e-38, 1))
    ref = lambda T: -np.mean(log_softmax(z / T, axis=1)[np.arange(len(y)), y])  # noqa: E731
    res = minimize_scalar(ref, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-8})
    # Compare the NLL reached: with no wrong validation image the NLL is flat near the
    # lower bound, where T itself is ill-determined (scipy stops short of the bound).
    assert ref(doc["temperature"]) <= ref(res.x) + 1e-6
    if 0.051 < doc["temperature"] < 19.9:
        assert doc["temperature"] == pytest.approx(res.x, rel=1e-3, abs=1e-4)
    assert doc["ece_before"] == pytest.approx(expected_calibration_error(probs, y), abs=1e-4)
    assert doc["validation"]["correct"] == [int(c) for c in probs.argmax(1) == y]


@pytest.mark.slow
def test_evaluate_reports_ece_and_the_report_shows_the_reliability_diagram(trained):
    run = trained["run"]
    # Training already evaluated the val split with its temperature.
    m = json.loads((run / "eval" / "val" / "metrics.json").read_text())
    T = json.loads((run / "calibration.json").read_text())["temperature"]
    assert m["calibration"]["temperature"] == T
    assert m["calibration"]["ece_before"] == pytest.approx(json.loads((run / "calibration.json").read_text())["ece_before"], abs=1e-6)
    r = _cli("evaluate", run, "--json")
    assert r.exit_code == 0, r.output
    cal = json.loads(r.stdout)["calibration"]
    probs, y = _val_probs(trained), np.asarray(trained["ds"].y_val)
    assert cal["ece_before"] == pytest.approx(expected_calibration_error(probs, y), abs=1e-4)
    assert cal["ece_after"] == pytest.approx(expected_calibration_error(temperature_scale(probs, T), y), abs=1e-4)
    assert sum(cal["reliability_after"]["count"]) == len(y)
    png = run / "eval" / "val" / "reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (run / "report.html").read_text()
    assert "<h3>Calibration</h3>" in html and "alt='reliability diagram" in html
    assert f"{cal['ece_before']:.4f}" in html
    table = _cli("evaluate", run)
    assert table.exit_code == 0 and f"calibration: ECE {cal['ece_before']:.4f}" in table.stdout


@pytest.mark.slow
def test_predict_threshold_auto_marks_unsure_rows(trained, tmp_path):
    run, y = trained["run"], np.asarray(trained["ds"].y_val)
    doc = json.loads((run / "calibration.json").read_text())
    calibrated = temperature_scale(_val_probs(trained), doc["temperature"])
    # Validation is never perfect (see the fixture), so a precision above the whole split's exists
    # that a threshold above the lowest confidence reaches: the highest one among fewer images.
    precision, ends = _precision_curve(doc["validation"]["confidence"], doc["validation"]["correct"])
    assert not all(doc["validation"]["correct"])
    p_min = float(max(precision[k] for k in ends[:-1]))
    assert p_min > precision[-1], "the model is surest of its wrong images: no threshold can help"
    expected = threshold_for_precision(calibrated, y, p_min)
    assert expected > calibrated.max(1).min()
    folder = trained["data"]
    r = _cli("predict", run, folder, "--threshold", "auto", "--min-precision", p_min, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["threshold"] == pytest.approx(expected, abs=2e-6)
    rows = [row for row in out["rows"] if row["error"] is None]
    assert len(rows) == trained["n_files"]
    for row in rows:
        assert (row["prediction"] == "unsure") == (row["confidence"] < out["threshold"])
        if row["prediction"] != "unsure":
            assert row["prediction"] == row["top"][0]["label"]
    n_unsure = sum(row["prediction"] == "unsure" for row in rows)
    assert 0 < n_unsure < len(rows)
    # csv and table carry the decision too.
    csv_out = _cli("predict", run, folder, "--threshold", "auto", "--min-precision", p_min, "--format", "csv")
    header, *lines = csv_out.stdout.splitlines()
    assert header.startswith("path,prediction,confidence,label_1")
    assert sum(line.split(",")[1] == "unsure" for line in lines) == n_unsure
    table = _cli("predict", run, folder, "--threshold", "auto", "--min-precision", p_min)
    assert table.exit_code == 0 and table.output.count("unsure") >= n_unsure
    # One-line user errors.
    for args, msg in ((("--threshold", "auto"), "--min-precision"), (("--min-precision", "0.9"), "needs --threshold auto"),
                      (("--threshold", "2"), "allowed: a number in (0, 1]")):
        bad = _cli("predict", run, folder, *args)
        assert bad.exit_code == 2 and msg in bad.output
    # Precision 1.0 is reachable exactly when every image of the most confident tie is right:
    # decided from the stored validation data, so exactly one outcome passes.
    reachable = precision[ends[0]] == 1.0
    r = _cli("predict", run, folder, "--threshold", "auto", "--min-precision", "1.0", "--json")
    if reachable:
        k = max(e for e in ends if precision[e] == 1.0)
        lowest_kept = np.sort(doc["validation"]["confidence"])[::-1][k]
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["threshold"] == pytest.approx(lowest_kept, abs=1e-9)
    else:
        assert r.exit_code == 2 and "no confidence threshold reaches it" in r.output


@pytest.mark.slow
def test_exports_carry_the_temperature_in_their_sidecar(trained):
    from resnet_tl.export.exporter import export_run
    from resnet_tl.inference.predict import predict

    run = trained["run"]
    doc = json.loads((run / "calibration.json").read_text())
    from resnet_tl.formats.tflite_metadata import read_metadata

    export_run(run, formats=["keras", "tflite"], quantize=["none"], check=False)
    for name in ("model.json", "model_float32.json"):
        assert json.loads((run / "export" / name).read_text())["temperature"] == doc["temperature"]
    description = read_metadata((run / "export" / "model_float32.tflite").read_bytes())["metadata"]["description"]
    assert f"temperature {doc['temperature']:.6g}" in description
    sidecar = json.loads((run / "export" / "model.json").read_text())
    assert "softmax(log(p) / temperature)" in sidecar["calibration_note"]
    assert [r["threshold"] for r in sidecar["confidence_thresholds"]] == [r["threshold"] for r in doc["thresholds"]]
    model = run / "export" / "model.keras"
    assert load_calibration(model).temperature == doc["temperature"]
    # The exported model outputs uncalibrated probabilities, exactly as the run's model does.
    r = predict(model, [str(trained["data"])], top_k=1, threshold="0.5")
    ref = predict(run, [str(trained["data"])], top_k=1)
    assert [x["top"] for x in r["rows"]] == [x["top"] for x in ref["rows"]]
    assert r["threshold"] == 0.5
