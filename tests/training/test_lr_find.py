"""lr-find: on a quadratic whose loss per step is known in closed form, the range test records
that loss and suggests the rate the stated rule picks; the CLI and `lr: find` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from resnet_tl.training.lr_find import exponential_rates, range_test, suggest

STEPS, START, END = 60, 1e-4, 10.0


def _rule_by_hand(lrs, losses, steps):
    """fastai's smoothing and 'steep' rule, written out again: debiased EMA (0.98), drop the first
    tenth and the last 5 points, the rate where d(loss)/d(log lr) is lowest before the lowest loss."""
    avg, sm = 0.0, []
    for i, loss in enumerate(losses):
        avg = 0.98 * avg + 0.02 * loss
        sm.append(avg / (1 - 0.98 ** (i + 1)))
    lr, sm = np.array(lrs)[steps // 10:len(lrs) - 5], np.array(sm)[steps // 10:len(lrs) - 5]
    lr, sm = lr[:np.argmin(sm) + 1], sm[:np.argmin(sm) + 1]
    return lr[np.argmin(np.diff(sm) / np.diff(np.log(lr)))]


def test_range_test_on_a_quadratic_follows_the_closed_form_and_suggests_by_the_rule():
    import keras

    # loss(w) = mean((y - w x)^2) with x = 1, y = 2: loss = (w - 2)^2, gradient 2 (w - 2). float64:
    # near lr = 0.5 one step lands almost on w = 2, and float32 would lose the remainder's digits.
    model = keras.Sequential([keras.Input((1,), dtype="float64"),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", dtype="float64")])
    model.compile(optimizer=keras.optimizers.SGD(exponential_rates(START, END, STEPS)), loss="mse", jit_compile=False)
    x, y = np.ones((8, 1)), np.full((8, 1), 2.0)
    lrs, losses, smoothed, stopped = range_test(model, lambda i: (x, y), STEPS)

    assert lrs == pytest.approx([START * (END / START) ** (i / (STEPS - 1)) for i in range(len(lrs))], rel=1e-5)
    w, expected = 0.0, []
    for lr in lrs:  # plain SGD: w <- w - lr_i * 2 (w - 2); it diverges once lr > 1
        expected.append((w - 2.0) ** 2)
        w -= lr * 2.0 * (w - 2.0)
    # The rule reads all but the last 5 points; those, past the rate where SGD diverges, multiply
    # rounding differences by |1 - 2 lr| > 1 at every step, so they match more loosely.
    assert losses[:-5] == pytest.approx(expected[:-5], rel=1e-4, abs=1e-8)
    assert losses == pytest.approx(expected, rel=1e-2, abs=1e-8)
    assert stopped and lrs[-1] > 1.0  # stopped by the divergence test, past the rate where SGD diverges
    steep, min10 = suggest(lrs, smoothed, STEPS)
    assert steep == _rule_by_hand(lrs, expected, STEPS)
    assert 1e-3 < steep < 1.0  # where the quadratic's loss falls, below the rate that diverges
    assert min10 == pytest.approx(lrs[int(np.argmin(smoothed[STEPS // 10:len(lrs) - 5])) + STEPS // 10] / 10)


@pytest.mark.slow
def test_lr_find_cli_then_train_with_lr_find(tmp_path, shared_data):
    from resnet_tl.cli import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"image_size": 16, "augment": {"flip": "none"}, "cache_dir": str(tmp_path / "cache")},
        "model": {"backbone": "resnet8", "weights": "none"},
        "schedule": [{"name": "warm", "epochs": 1, "train": "all", "lr": 1e-4, "batchnorm": "train"},
                     {"name": "main", "epochs": 1, "train": "all", "lr": 0.01, "batchnorm": "train"}],
        "train": {"batch_size": 16, "precision": "float32"},
    }))
    runner = CliRunner()
    plot = tmp_path / "lr.png"
    res = runner.invoke(app, ["lr-find", str(recipe), "--data", str(shared_data / "train"), "--phase", "1",
                              "--steps", "20", "--plot", str(plot), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # stdout is the one JSON document; progress and logs go to stderr
    assert doc["phase"] == 1 and doc["name"] == "main" and "steepest descent" in doc["rule"]
    assert len(doc["lrs"]) <= 20 and min(doc["lrs"]) <= doc["suggestion"] <= max(doc["lrs"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = runner.invoke(app, ["train", str(recipe), "--data", str(shared_data), "--out", str(tmp_path / "runs"),
                              "--name", "found", "--set", "schedule.0.lr=find", "--json"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "found"
    (row,) = json.loads((run / "lr_find.json").read_text())
    assert row["phase"] == 0 and "steepest descent" in row["rule"]
    assert yaml.safe_load((run / "recipe.yaml").read_text())["schedule"][0]["lr"] == row["lr"]
    history = (run / "history.csv").read_text().splitlines()
    assert float(history[1].split(",")[2]) == pytest.approx(row["lr"])  # the phase trained at that rate
    assert (run / "plots" / "lr_find_phase0.png").exists()


def test_lr_find_in_a_schedule_shows_in_the_dry_run_and_bad_values_name_the_key():
    from resnet_tl.cli import app

    runner = CliRunner()
    sets = ["--set", "schedule.1.lr=find", "--set", "schedule.2.decay=onecycle"]
    assert runner.invoke(app, ["train", "small-images", "--dry-run", *sets]).exit_code == 0  # the table renders 'find'
    res = runner.invoke(app, ["train", "small-images", "--dry-run", "--json", *sets])
    rows = json.loads(res.stdout)
    assert rows[1]["lr"] == "find" and rows[2]["decay"] == "onecycle"
    res = runner.invoke(app, ["train", "small-images", "--dry-run", "--set", "schedule.0.lr=fnd"])
    assert res.exit_code == 2 and "schedule.0.lr" in res.output and "find" in res.output
