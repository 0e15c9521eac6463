"""The export gates judge a sample with its uncertainty: exact binomial bounds, checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from resnet_tl.export.gate_stats import agreement_bounds, clopper_pearson, drop_bounds, images_needed
from resnet_tl.export.parity import counts, describe_gate, gates
from resnet_tl.recipe import ExportConfig


def _one_sided(k: int, n: int) -> tuple[float, float]:
    """scipy's exact one-sided 95% bounds: the lower from alternative='greater', the upper from 'less'."""
    lo = binomtest(k, n, alternative="greater").proportion_ci(0.95, method="exact").low
    hi = binomtest(k, n, alternative="less").proportion_ci(0.95, method="exact").high
    return lo, hi


@pytest.mark.parametrize("k,n", [(95, 96), (96, 96), (0, 12), (86, 96), (990, 1000), (3, 7), (11995, 12000)])
def test_clopper_pearson_matches_scipy(k, n):
    np.testing.assert_allclose(clopper_pearson(k, n), _one_sided(k, n), atol=1e-9)


def test_paired_drop_bound_is_the_exact_bound_on_discordant_pairs():
    # 7 images newly wrong, 2 newly right, of 96: McNemar's exact test looks at 7 of 9 discordant pairs.
    lo, hi = _one_sided(7, 9)
    np.testing.assert_allclose(drop_bounds(7, 2, 96), (9 * (2 * lo - 1) / 96, 9 * (2 * hi - 1) / 96), atol=1e-9)
    assert drop_bounds(0, 0, 96) == (0.0, 0.0)


@pytest.mark.parametrize("limit", [0.005, 0.01, 0.03])
def test_images_needed_is_the_least_sample_that_proves_the_limit(limit):
    n = images_needed(limit)
    # With no flip in n images, scipy's exact upper bound on the flip rate reaches the limit; with n - 1 it does not.
    assert _one_sided(0, n)[1] <= limit < _one_sided(0, n - 1)[1]


def _row(n: int, newly_wrong: int, newly_right: int = 0, keras_wrong: int = 0) -> dict:
    """Counts of a parity row: Keras right on n - keras_wrong images; the artifact flips some."""
    y = np.zeros(n, int)
    ref = np.zeros(n, int)
    ref[:keras_wrong] = 1
    pred = ref.copy()
    pred[keras_wrong:keras_wrong + newly_wrong] = 1
    pred[:newly_right] = 0
    return counts(pred, ref, y)


def test_one_flip_of_96_passes_and_ten_percent_fails():
    cfg = ExportConfig()  # the defaults: 0.995 / 0.97 agreement, 0.01 accuracy drop
    one = gates(_row(96, 1), cfg, "none")
    # 1 of 96 is 1.04%: over both limits as a figure, yet not shown to be over them.
    assert one["agreement"]["value"] < cfg.min_agreement_float and one["accuracy_drop"]["value"] > cfg.max_accuracy_drop
    assert one["agreement"]["passed"] and one["accuracy_drop"]["passed"]
    assert one["agreement"]["n"] == 96 and one["agreement"]["images_needed"] == 598
    assert one["agreement"]["interval"] == pytest.approx(list(_one_sided(95, 96)), abs=1e-6)

    ten = gates(_row(96, 10), cfg, "int8")
    assert not ten["agreement"]["passed"] and not ten["accuracy_drop"]["passed"]
    line = describe_gate("accuracy_drop", ten["accuracy_drop"])
    lo = 10 * (2 * _one_sided(10, 10)[0] - 1) / 96
    assert f"accuracy drop 0.1042 > 0.01 (export.max_accuracy_drop): with 95% confidence at least {lo:.4f}" in line
    assert f"{lo - 0.01:.4f} over the limit (n=96)" in line
    assert "(export.min_agreement_int8)" in describe_gate("agreement", ten["agreement"])


def test_flips_both_ways_cancel_in_the_drop_but_not_in_agreement():
    g = gates(_row(200, 6, newly_right=6, keras_wrong=6), ExportConfig(), "none")
    assert g["accuracy_drop"]["value"] == 0 and g["accuracy_drop"]["passed"]
    _, hi = agreement_bounds(188, 200)
    assert g["agreement"]["value"] == pytest.approx(0.94) and hi < 0.995 and not g["agreement"]["passed"]


def test_the_table_shows_the_interval_and_the_images_the_limit_needs(capsys, monkeypatch, tmp_path):
    import importlib

    from resnet_tl.cli.common import out
    from resnet_tl.export.exporter import Artifact, ExportResult

    cli_export = importlib.import_module("resnet_tl.cli.export")  # the package also exports the command function by that name
    monkeypatch.setattr(out, "_width", 200)
    row = {**_row(96, 1), "max_abs_diff": 0.5, "predicted_classes": 2, "latency_ms": 1.0}
    art = Artifact("tflite", "none", "model_float32.tflite", "model_float32.json", "litert", size_bytes=10**6,
                   check="passed", parity=row, gates=gates(row, ExportConfig(), "none"))
    cli_export._show(ExportResult(tmp_path, [art], {}, 96, 1.0), json_=False)
    text = capsys.readouterr().out
    lo, hi = _one_sided(95, 96)
    assert "agree [lo, hi]" in text and f"0.990 [{lo:.3f}, {hi:.3f}]" in text
    assert "n=96 (0.995 needs 598)" in text and "[lo, hi]: each a one-sided" in text


def test_the_table_lists_each_repair_attempt(capsys, monkeypatch, tmp_path):
    import importlib

    from resnet_tl.cli.common import out
    from resnet_tl.export.exporter import Artifact, ExportResult

    cli_export = importlib.import_module("resnet_tl.cli.export")
    monkeypatch.setattr(out, "_width", 200)
    attempts = [{"float_layers": [], "size_bytes": 1_000_000, "agreement": 0.5, "accuracy": 0.5, "latency_ms": 1.0, "passed": False},
                {"float_layers": ["model/dense/MatMul"], "size_bytes": 1_200_000, "agreement": 1.0, "accuracy": 1.0,
                 "latency_ms": 1.5, "passed": True}]
    art = Artifact("tflite", "int8", "model_int8.tflite", "model_int8.json", "litert", note="int8 repaired: ...",
                   repair={"passed": True, "float_layers": ["model/dense/MatMul"], "attempts": attempts, "ranked": {}})
    cli_export._show(ExportResult(tmp_path, [art], {}, 0, 1.0), json_=False)
    text = capsys.readouterr().out
    assert "attempt 0: plain int8, 1.00 MB, agreement 0.5000, accuracy 0.5000, 1.00 ms, failed" in text
    assert "attempt 1: 1 layer(s) in float, 1.20 MB, agreement 1.0000, accuracy 1.0000, 1.50 ms, passed" in text
