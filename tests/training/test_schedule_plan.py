"""Schedule expansion, stage selection and the learning-rate curve (no model needed)."""

from __future__ import annotations

import pytest

from resnet_tl.errors import UserError
from resnet_tl.recipe import PhaseConfig, build_recipe
from resnet_tl.training.schedule import expand_schedule, lr_at, select_stages

STAGES = ("stem", "conv2", "conv3", "conv4", "conv5")
CIFAR = ("stem", "conv2", "conv3", "conv4")


def test_stage_selection_forms():
    assert select_stages(PhaseConfig(train="head"), STAGES, "s") == ("head",)
    assert select_stages(PhaseConfig(train="all"), STAGES, "s") == STAGES + ("head",)
    assert select_stages(PhaseConfig(), STAGES, "s") == STAGES + ("head",)
    assert select_stages(PhaseConfig(train=["head", "conv5"]), STAGES, "s") == ("conv5", "head")
    assert select_stages(PhaseConfig(**{"from": "conv4"}), STAGES, "s") == ("conv4", "conv5", "head")


def test_unknown_stage_is_a_user_error_naming_the_key():
    with pytest.raises(UserError, match=r"schedule\.1\.train: received 'conv5'; allowed: .*conv4"):
        expand_schedule(build_recipe({}), CIFAR)  # the default schedule trains conv5, which CIFAR nets lack
    with pytest.raises(UserError, match=r"s\.from: received 'conv9'"):
        select_stages(PhaseConfig(**{"from": "conv9"}), STAGES, "s")


def test_train_and_from_together_rejected():
    with pytest.raises(UserError, match="either 'train' or 'from'"):
        build_recipe({"schedule": [{"train": "head", "from": "conv4"}]})


def test_gradual_expands_to_one_phase_per_stage():
    r = build_recipe({"schedule": [
        {"gradual": {"start": "conv5", "stop": "conv3", "epochs_per_stage": 2, "head_epochs": 1, "lr": 1e-4, "head_lr": 1e-3}},
        {"name": "polish", "epochs": 1, "train": "all", "lr": 1e-5},
    ]})
    phases = expand_schedule(r, STAGES)
    assert [p.name for p in phases] == ["head", "from_conv5", "from_conv4", "from_conv3", "polish"]
    assert [p.stages for p in phases[:4]] == [
        ("head",), ("conv5", "head"), ("conv4", "conv5", "head"), ("conv3", "conv4", "conv5", "head"),
    ]
    assert [p.config.epochs for p in phases] == [1, 2, 2, 2, 1]
    assert phases[0].config.lr == 1e-3 and phases[1].config.lr == 1e-4
    assert phases[0].uses_feature_cache and not phases[1].uses_feature_cache


def test_gradual_stop_above_start_rejected():
    r = build_recipe({"schedule": [{"gradual": {"start": "conv3", "stop": "conv5"}}]})
    with pytest.raises(UserError, match="unfreezing goes downwards"):
        expand_schedule(r, STAGES)


def test_head_only_phase_caches_features_unless_turned_off():
    r = build_recipe({"schedule": [{"train": "head"}, {"train": "head", "cache_features": False}]})
    a, b = expand_schedule(r, STAGES)
    assert a.uses_feature_cache and not b.uses_feature_cache


def test_lr_curve_warmup_and_decays():
    steps = 10
    const = PhaseConfig(epochs=3, lr=1.0, warmup_epochs=1)
    assert lr_at(0, steps, const) == pytest.approx(0.1)
    assert lr_at(9, steps, const) == pytest.approx(1.0)
    assert lr_at(25, steps, const) == 1.0
    cos = PhaseConfig(epochs=3, lr=1.0, decay="cosine")
    assert lr_at(0, steps, cos) == pytest.approx(1.0)
    assert lr_at(15, steps, cos) == pytest.approx(0.5)
    assert lr_at(30, steps, cos) == pytest.approx(0.0, abs=1e-12)
    lin = PhaseConfig(epochs=2, lr=2.0, decay="linear")
    assert lr_at(10, steps, lin) == pytest.approx(1.0)


def test_feature_cache_follows_augmentation_and_mixing():
    def phase0(augment, **head):
        r = build_recipe({"data": {"augment": augment}, "schedule": [{"train": "head", "epochs": 5, **head}]})
        return expand_schedule(r, STAGES)[0]

    plain = phase0({"flip": "none"})
    assert (plain.cache_views, plain.augmented_views) == (1, False)
    flips = phase0({"flip": "horizontal"})  # one augmented view per epoch, up to 4
    assert (flips.cache_views, flips.augmented_views) == (4, True)
    assert phase0({"flip": "horizontal"}, feature_cache_views=2).cache_views == 2
    one_epoch = phase0({"flip": "horizontal"}, epochs=1)  # one fresh augmentation, as live training sees
    assert (one_epoch.cache_views, one_epoch.augmented_views) == (1, True)
    explicit_one = phase0({"flip": "horizontal"}, feature_cache_views=1)
    assert (explicit_one.cache_views, explicit_one.augmented_views) == (1, False)
    # Mixup and CutMix mix images: the head phase trains live.
    for mix in ({"mixup": 0.2}, {"cutmix": 1.0}):
        assert not phase0({"flip": "none", **mix}).uses_feature_cache
        with pytest.raises(UserError, match=r"schedule\.0\.cache_features: received true .*allowed: false or unset"):
            phase0({"flip": "none", **mix}, cache_features=True)
