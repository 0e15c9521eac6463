"""decay: onecycle: the rate and the momentum a real Keras optimizer applies follow fastai's
fit_one_cycle (written out here from fastai's docs, not from our code)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from resnet_tl.recipe import PhaseConfig
from resnet_tl.training.schedule import Phase, lr_at
from resnet_tl.training.stages import phase_optimizer

STEPS_PER_EPOCH, EPOCHS, PEAK = 5, 4, 0.2
TOTAL = STEPS_PER_EPOCH * EPOCHS


def fastai_sched_cos(start, end, pos):
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def fastai_combined_cos(pos, start, middle, end, pct=0.25):
    if pos < pct:
        return fastai_sched_cos(start, middle, pos / pct)
    return fastai_sched_cos(middle, end, (pos - pct) / (1 - pct))


def fastai_lr(step):  # fit_one_cycle(lr_max=PEAK, div=25, div_final=1e5, pct_start=0.25)
    return fastai_combined_cos(step / TOTAL, PEAK / 25, PEAK, PEAK / 1e5)


def fastai_mom(step):  # moms=(0.95, 0.85, 0.95)
    return fastai_combined_cos(step / TOTAL, 0.95, 0.85, 0.95)


def _optimizer(name):
    import keras

    cfg = PhaseConfig(epochs=EPOCHS, lr=PEAK, decay="onecycle", optimizer=name)
    w = keras.Variable(np.zeros(3, np.float32), name="w")
    opt = phase_optimizer(keras.Sequential(), Phase(0, "p", cfg, ("head",)), (), STEPS_PER_EPOCH)
    opt.build([w])
    return opt, w


def test_onecycle_rate_follows_fastai_and_the_optimizer_applies_it():
    cfg = PhaseConfig(epochs=EPOCHS, lr=PEAK, decay="onecycle")
    curve = [lr_at(s, STEPS_PER_EPOCH, cfg) for s in range(TOTAL)]
    assert curve == pytest.approx([fastai_lr(s) for s in range(TOTAL)], rel=1e-9)
    assert curve[0] == pytest.approx(PEAK / 25) and max(curve) == pytest.approx(PEAK, rel=1e-3)
    opt, w = _optimizer("adam")
    applied = []
    for _ in range(TOTAL):
        applied.append(float(np.asarray(opt.learning_rate)))
        opt.apply_gradients([(np.ones(3, np.float32), w)])
    assert applied == pytest.approx(curve, rel=1e-5)


def test_onecycle_sgd_momentum_cycles_inversely_as_fastai_does():
    opt, w = _optimizer("sgd")
    g = np.array([1.0, -2.0, 0.5], np.float32)
    weights, velocity_prev, moms = [np.asarray(w).copy()], None, []
    for s in range(TOTAL):
        opt.apply_gradients([(g, w)])
        weights.append(np.asarray(w).copy())
        velocity = weights[-1] - weights[-2]  # Keras SGD: v = m * v - lr * g; w += v
        if velocity_prev is not None:
            moms.append(float(np.mean((velocity + fastai_lr(s) * g) / velocity_prev)))
        velocity_prev = velocity
    assert moms == pytest.approx([fastai_mom(s) for s in range(1, TOTAL)], rel=1e-4, abs=1e-5)
    assert min(moms) < 0.86 and moms[-1] > 0.94  # low at the peak rate, back up at the end


def test_onecycle_adam_beta_1_follows_the_cycle():
    # Adam's first moment after one step from zero is (1 - beta_1) * g: the step's beta_1.
    opt, w = _optimizer("adam")
    m = next(v for v in opt.variables if "momentum" in v.path)  # Keras names Adam's first moments so
    for s in range(TOTAL):
        m.assign(np.zeros(3, np.float32))
        opt.apply_gradients([(np.ones(3, np.float32), w)])
        assert float(np.asarray(m)[0]) == pytest.approx(1 - fastai_mom(s), rel=1e-4)
