"""Precision and XLA resolution against fake device lists; mixed-precision
training on the CPU (bfloat16 end to end, float16 with loss scaling)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import bars_dataset, tiny_recipe

from resnet_tl.training import precision as precision_mod
from resnet_tl.training.precision import Device, resolve_jit, resolve_precision

V100 = Device("gpu", "Tesla V100", (7, 0))
T4 = Device("gpu", "Tesla T4", (7, 5))
P100 = Device("gpu", "Tesla P100", (6, 0))
CPU = Device("cpu", "cpu")
TPU = Device("tpu", "TPU v4")
A100 = Device("gpu", "NVIDIA A100", (8, 0))
H200 = Device("gpu", "NVIDIA H200", (9, 0))


@pytest.fixture(autouse=True)
def _float32_afterwards():
    yield
    import keras

    keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.parametrize("devices, expected", [
    ([CPU], "float32"),
    ([V100], "mixed_float16"),
    ([T4, T4], "mixed_float16"),
    ([P100], "float32"),                # no tensor cores
    ([V100, P100], "float32"),          # every GPU must have them
    ([Device("gpu", "unknown", None)], "float32"),
    ([TPU], "mixed_bfloat16"),
    ([A100], "mixed_bfloat16"),         # Ampere and later: bfloat16, no loss scaling
    ([H200, H200], "mixed_bfloat16"),
    ([H200, V100], "mixed_float16"),    # the slowest GPU decides
])
def test_auto_precision_follows_the_devices(devices, expected):
    assert resolve_precision("auto", devices) == expected
    assert precision_mod.precision_rule(devices).precision == expected


def test_every_precision_rule_is_reachable_and_says_why():
    deciders = {precision_mod.precision_rule(ds).name for ds in ([H200], [T4], [TPU], [CPU])}
    assert deciders == {r.name for r in precision_mod.PRECISION_RULES}
    assert all(len(r.why) > 20 for r in precision_mod.PRECISION_RULES)


@pytest.mark.parametrize("requested", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_precision_is_kept_whatever_the_devices(requested):
    assert resolve_precision(requested, [CPU]) == requested
    assert resolve_precision(requested, [V100]) == requested


@pytest.mark.parametrize("requested, backend, devices, expected", [
    ("auto", "tensorflow", [CPU], False),
    ("auto", "tensorflow", [V100], True),
    ("auto", "jax", [CPU], True),       # the JAX trainer runs eagerly without it
    (True, "tensorflow", [CPU], True),
    (False, "jax", [V100], False),
])
def test_jit_compile_resolution(requested, backend, devices, expected):
    assert resolve_jit(requested, backend, devices) is expected


def test_configure_on_a_fake_gpu_sets_the_policy_and_xla(monkeypatch):
    import keras

    monkeypatch.setattr(precision_mod, "list_devices", lambda backend: [T4])
    setup = precision_mod.configure(tiny_recipe([{"epochs": 1}], train={"precision": "auto"}).train)
    assert (setup.precision, setup.jit_compile, setup.distribute, setup.is_chief) == ("mixed_float16", True, "none", True)
    assert keras.config.dtype_policy().name == "mixed_float16"


def test_mixed_bfloat16_trains_with_a_float32_output(tmp_path):
    import keras

    ds = bars_dataset(n_per_class=8, n_val_per_class=4)
    recipe = tiny_recipe([{"epochs": 3, "train": "all", "lr": 3e-3, "batchnorm": "train"}], train={"precision": "mixed_bfloat16"})
    result = train_run(recipe, tmp_path, ds)
    assert result.precision == "mixed_bfloat16"
    losses = [r["loss"] for r in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    keras.mixed_precision.set_dtype_policy("float32")
    model = keras.saving.load_model(result.run_dir / "model.keras")
    conv = model.get_layer("resnet8").get_layer("conv2_block1_1_conv")
    assert conv.dtype_policy.name == "mixed_bfloat16" and conv.kernel.dtype == "float32"
    out = model(ds.x_val[:4].astype("float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_mixed_float16_wraps_our_optimizer_in_loss_scaling():
    """Keras adds the LossScaleOptimizer at compile; per-stage rates still apply inside it."""
    import keras

    from resnet_tl.models.classifier import build_classifier
    from resnet_tl.recipe import PhaseConfig
    from resnet_tl.training.stages import make_optimizer
    from resnet_tl.training.schedule import Phase
    from resnet_tl.training.stages import apply_freezing, lr_multipliers, make_lr_schedule

    keras.mixed_precision.set_dtype_policy("mixed_float16")
    ds = bars_dataset(n_per_class=4, n_val_per_class=1)
    # ResNet-20, not the suite's resnet8: its first float16 steps overflow, so the test sees a step skipped.
    recipe = tiny_recipe([{"epochs": 1}], backbone="resnet20")
    keras.utils.set_random_seed(0)
    clf = build_classifier(recipe.model, 2, 16)
    assert keras.backend.standardize_dtype(clf.output.dtype) == "float32"
    stages = ("stem", "conv2", "conv3", "conv4")
    cfg = PhaseConfig(train="all", optimizer="sgd", momentum=0.0, lr=0.05, lr_decay_per_stage=0.5)
    phase = Phase(0, "p", cfg, stages + ("head",))
    apply_freezing(clf, phase)
    inner = make_optimizer(cfg, make_lr_schedule(cfg, 1), lr_multipliers(clf, phase, stages))
    clf.compile(optimizer=inner, loss="categorical_crossentropy")
    assert isinstance(clf.optimizer, keras.optimizers.LossScaleOptimizer)
    assert clf.optimizer.inner_optimizer is inner
    head = clf.get_layer("head").get_layer("head_logits").kernel
    stem = clf.get_layer("resnet20").get_layer("conv1_conv").kernel
    before = [np.array(head.numpy()), np.array(stem.numpy())]
    y = keras.utils.to_categorical(ds.y_train, 2)
    # The first steps may overflow in float16: those are skipped and the scale halves.
    for _ in range(20):
        loss = clf.train_on_batch(ds.x_train.astype("float32"), y)
        if not np.array_equal(before[0], head.numpy()):
            break
    assert np.isfinite(loss)
    assert 1.0 <= float(clf.optimizer.dynamic_scale.numpy()) < 2.0**15
    assert not np.array_equal(before[0], head.numpy()) and not np.array_equal(before[1], stem.numpy())


def train_run(recipe, tmp_path, ds):
    from resnet_tl.training.train import train

    return train(recipe, out=tmp_path, name="r", dataset=ds)
