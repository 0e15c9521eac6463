"""The staged trainer: learning, run folder, freezing, BatchNorm policy,
per-stage learning rates and the cached-feature head phase."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from helpers import bars_dataset, tiny_recipe

from resnet_tl.training.train import train


def _weights_by_stage(classifier):
    from resnet_tl.models.classifier import stage_layers

    out = {}
    for layer, stage in stage_layers(classifier):
        for v in layer.weights:
            out[v.path] = (stage, np.array(v.numpy()))
    return out


@pytest.mark.slow
def test_training_lowers_loss_and_writes_the_run_folder(tmp_path):
    ds = bars_dataset()
    recipe = tiny_recipe([{"name": "all", "epochs": 4, "train": "all", "lr": 3e-3, "batchnorm": "train"}])
    result = train(recipe, out=tmp_path, name="run1", dataset=ds)
    run = tmp_path / "run1"
    assert result.run_dir == run
    for name in ("recipe.yaml", "labels.txt", "model.keras", "history.csv", "metrics.json", "status.json"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert list(rows[0]) == ["phase", "epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert (run / "labels.txt").read_text().split() == ds.classes
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_train"] == len(ds.y_train) and metrics["n_val"] == len(ds.y_val)
    assert set(metrics["per_class_accuracy"]) == set(ds.classes)
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    # The stored recipe reproduces the run's configuration.
    assert yaml.safe_load((run / "recipe.yaml").read_text())["model"]["backbone"] == "resnet8"
    # The saved model is the best epoch's, and loads in safe mode.
    import keras

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    best = max(float(r["val_accuracy"]) for r in rows)
    probs = np.asarray(model.predict(ds.x_val.astype("float32"), verbose=0))
    assert np.mean(probs.argmax(1) == ds.y_val) == pytest.approx(best, abs=1e-6)


def test_existing_run_folder_is_never_reused(tmp_path):
    from resnet_tl.errors import UserError

    ds = bars_dataset(n_per_class=4, n_val_per_class=2)
    recipe = tiny_recipe([{"epochs": 1, "train": "head"}])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="already exists"):
        train(recipe, out=tmp_path, name="taken", dataset=ds)
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="--name"):
        train(recipe, out=tmp_path, name="../escape", dataset=ds)


@pytest.mark.parametrize("cache", [True, False])
def test_head_only_phase_keeps_backbone_bit_for_bit(tmp_path, cache):
    import keras

    from resnet_tl.models.classifier import build_classifier
    from resnet_tl.models.saving import load_keras_model

    ds = bars_dataset(n_per_class=8, n_val_per_class=4)
    recipe = tiny_recipe([{"epochs": 2, "train": "head", "lr": 1e-2, "cache_features": cache}])
    keras.utils.set_random_seed(recipe.train.seed)
    before = _weights_by_stage(build_classifier(recipe.model, 2, 16))
    result = train(recipe, out=tmp_path, name="r", dataset=ds)
    after = _weights_by_stage(load_keras_model(result.run_dir / "model.keras"))
    # Same seed, same build: variable paths and initial values line up.
    changed = {stage for path, (stage, value) in after.items() if not np.array_equal(value, before[path][1])}
    assert changed == {"head"}


def test_batchnorm_frozen_keeps_statistics_and_train_changes_them(tmp_path):
    import keras

    from resnet_tl.models.classifier import build_classifier, parts
    from resnet_tl.recipe import PhaseConfig
    from resnet_tl.training.schedule import Phase
    from resnet_tl.training.stages import apply_freezing

    ds = bars_dataset(n_per_class=8, n_val_per_class=2)
    recipe = tiny_recipe([{"epochs": 1}])
    x = ds.x_train.astype("float32")
    y = keras.utils.to_categorical(ds.y_train, 2)
    for policy, expect_change in (("frozen", False), ("train", True)):
        keras.utils.set_random_seed(0)
        clf = build_classifier(recipe.model, 2, 16)
        backbone, _ = parts(clf)
        bn = backbone.get_layer("conv4_block1_1_bn")
        stats = [np.array(bn.moving_mean.numpy()), np.array(bn.moving_variance.numpy())]
        gamma = np.array(bn.gamma.numpy())
        stages = ("stem", "conv2", "conv3", "conv4", "head")
        apply_freezing(clf, Phase(0, "p", PhaseConfig(train="all", batchnorm=policy), stages))
        clf.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
        clf.fit(x, y, batch_size=8, epochs=1, verbose=0)
        moved = not (np.array_equal(stats[0], bn.moving_mean.numpy()) and np.array_equal(stats[1], bn.moving_variance.numpy()))
        assert moved == expect_change, policy
        assert (not np.array_equal(gamma, bn.gamma.numpy())) == expect_change
        # Convolutions train under both policies.
        assert backbone.get_layer("conv4_block1_1_conv").trainable


def test_per_stage_learning_rates_scale_the_actual_updates():
    import keras

    from resnet_tl.models.classifier import build_classifier, stage_layers
    from resnet_tl.recipe import PhaseConfig
    from resnet_tl.training.stages import make_optimizer
    from resnet_tl.training.schedule import Phase
    from resnet_tl.training.stages import apply_freezing, lr_multipliers, make_lr_schedule

    ds = bars_dataset(n_per_class=4, n_val_per_class=1)
    recipe = tiny_recipe([{"epochs": 1}])
    x = ds.x_train.astype("float32")
    y = keras.utils.to_categorical(ds.y_train, 2)
    stages = ("stem", "conv2", "conv3", "conv4")
    deltas = {}
    for factor in (1.0, 0.5):
        keras.utils.set_random_seed(0)
        clf = build_classifier(recipe.model, 2, 16)
        cfg = PhaseConfig(train="all", optimizer="sgd", momentum=0.0, lr=0.05, lr_decay_per_stage=factor)
        phase = Phase(0, "p", cfg, stages + ("head",))
        apply_freezing(clf, phase)
        start = {v.path: np.array(v.numpy()) for v in clf.trainable_variables}
        clf.compile(optimizer=make_optimizer(cfg, make_lr_schedule(cfg, 1), lr_multipliers(clf, phase, stages)), loss="categorical_crossentropy")
        clf.train_on_batch(x, y)
        stage_of_var = {v.path: s for layer, s in stage_layers(clf) for v in layer.trainable_weights}
        deltas[factor] = {p: (stage_of_var[p], np.array(v.numpy()) - start[p]) for p, v in ((v.path, v) for v in clf.trainable_variables)}
    depth = {"head": 0, "conv4": 1, "conv3": 2, "conv2": 3, "stem": 4}
    checked = set()
    for path, (stage, d_full) in deltas[1.0].items():
        d_half = deltas[0.5][path][1]
        if np.abs(d_full).max() < 1e-7:
            continue
        np.testing.assert_allclose(d_half, d_full * 0.5 ** depth[stage], rtol=2e-3, atol=1e-7)
        checked.add(stage)
    assert checked == set(depth)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_weight_decay_follows_each_stage_rate_and_spares_1d_variables(optimizer):
    """One step with zero gradients: only decay moves weights, by exactly
    lr x factor^depth x weight_decay x value (timm / BEiT layer decay)."""
    import keras

    from resnet_tl.models.classifier import build_classifier, stage_layers
    from resnet_tl.training.stages import make_optimizer
    from resnet_tl.recipe import PhaseConfig
    from resnet_tl.training.schedule import Phase
    from resnet_tl.training.stages import apply_freezing, lr_multipliers

    recipe = tiny_recipe([{"epochs": 1}])
    stages = ("stem", "conv2", "conv3", "conv4")
    lr, wd, factor = 0.05, 0.1, 0.5
    keras.utils.set_random_seed(0)
    clf = build_classifier(recipe.model, 2, 16)
    cfg = PhaseConfig(train="all", optimizer=optimizer, momentum=0.0, lr=lr, weight_decay=wd,
                      lr_decay_per_stage=factor, batchnorm="train")
    phase = Phase(0, "p", cfg, stages + ("head",))
    apply_freezing(clf, phase)
    opt = make_optimizer(cfg, lr, lr_multipliers(clf, phase, stages))
    variables = clf.trainable_variables
    before = [np.array(v.numpy()) for v in variables]
    opt.apply([keras.ops.zeros(v.shape) for v in variables], variables)
    depth = {"head": 0, "conv4": 1, "conv3": 2, "conv2": 3, "stem": 4}
    stage_of = {v.path: s for layer, s in stage_layers(clf) for v in layer.trainable_weights}
    seen = {"decayed": set(), "spared": 0}
    for v, old in zip(variables, before):
        new = np.array(v.numpy())
        if old.ndim <= 1:
            np.testing.assert_array_equal(new, old, err_msg=v.path)
            seen["spared"] += 1
        else:
            expected = old - lr * factor ** depth[stage_of[v.path]] * wd * old
            np.testing.assert_allclose(new, expected, rtol=1e-6, atol=1e-9, err_msg=v.path)
            seen["decayed"].add(stage_of[v.path])
    assert seen["decayed"] == set(depth) and seen["spared"] > 10  # biases and BatchNorm gamma/beta


@pytest.mark.slow
def test_cached_and_live_head_training_agree(tmp_path):
    from resnet_tl.models.classifier import head_of
    from resnet_tl.models.saving import load_keras_model

    heads = {}
    for cache in (True, False):
        ds = bars_dataset(n_per_class=8, n_val_per_class=4)
        recipe = tiny_recipe([{"epochs": 3, "train": "head", "lr": 1e-2, "cache_features": cache}])
        result = train(recipe, out=tmp_path, name=f"c{cache}", dataset=ds)
        heads[cache] = [np.array(v.numpy()) for v in head_of(load_keras_model(result.run_dir / "model.keras")).weights]
    for a, b in zip(heads[True], heads[False]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_weights_from_a_file_load_into_the_classifier(tmp_path):
    import keras

    from resnet_tl.models.resnets import build_backbone
    from resnet_tl.models.classifier import build_classifier, parts
    from resnet_tl.recipe import build_recipe

    keras.utils.set_random_seed(3)
    saved = build_backbone("resnet8", 16)
    path = tmp_path / "b.weights.h5"
    saved.save_weights(path)
    recipe = build_recipe({"model": {"backbone": "resnet8", "weights": str(path)}})
    clf = build_classifier(recipe.model, 2, 16)
    backbone, _ = parts(clf)
    for a, b in zip(saved.weights, backbone.weights):
        assert np.array_equal(a.numpy(), b.numpy())


def test_early_stopping_ends_the_phase_and_the_next_phase_runs(tmp_path):
    ds = bars_dataset(n_per_class=8, n_val_per_class=4)
    # lr 1e-12 leaves the weights unchanged in float32: no epoch after the first improves.
    recipe = tiny_recipe(
        [{"name": "stuck", "epochs": 6, "train": "head", "lr": 1e-12}, {"name": "next", "epochs": 1, "train": "head"}],
        train={"patience": 2, "monitor": "val_loss"},
    )
    result = train(recipe, out=tmp_path, name="es", dataset=ds)
    assert [r["phase"] for r in result.history] == ["stuck", "stuck", "stuck", "next"]
    with np.load(tmp_path / "es" / "checkpoint" / "last.npz") as z:
        assert json.loads(str(z["state"]))["phase"] == 1


def test_training_completes_on_a_messy_folder_and_reports_every_bad_file(messy_folder, tmp_path):
    from images import MESSY_EXPECTED

    from resnet_tl.recipe import build_recipe

    recipe = build_recipe({
        "name": "messy",
        "data": {"dir": str(messy_folder), "image_size": 16, "skip_empty_classes": True,
                 "cache_dir": str(tmp_path / "cache"), "augment": {"flip": "none"}},
        "model": {"backbone": "resnet8"},
        "schedule": [{"epochs": 1, "train": "all", "batchnorm": "train"}],
        "train": {"batch_size": 4, "precision": "float32"},
    })
    result = train(recipe, out=tmp_path / "runs", name="messy")
    assert (result.run_dir / "labels.txt").read_text().split() == ["cat", "dog"]  # bird had no usable image
    used = sum(1 for v in MESSY_EXPECTED.values() if v == "used")
    assert result.metrics["n_train"] + result.metrics["n_val"] == used
    report = json.loads((result.run_dir / "data_report.json").read_text())
    skipped = {s["path"].split("messy/")[-1]: s["reason"] for s in report["skipped"]}
    assert skipped == {k: v for k, v in MESSY_EXPECTED.items() if v != "used"}


def _two_phase(tmp_path, name, augment, phase=None, train_cfg=None, head_epochs=1, ds=None):
    """Head-only phase, then everything: the shape of every shipped transfer recipe."""
    ds = ds or bars_dataset(n_per_class=8, n_val_per_class=4)
    phase = phase or {}
    recipe = tiny_recipe(
        [{"name": "head", "epochs": head_epochs, "train": "head", "lr": 1e-2, **phase},
         {"name": "all", "epochs": 1, "train": "all", "lr": 3e-3, "batchnorm": "train",
          **{k: v for k, v in phase.items() if k != "feature_cache_views"}}],
        data={"augment": {"flip": "none", **augment}}, train=train_cfg or {})
    return train(recipe, out=tmp_path, name=name, dataset=ds), ds


def _check_run(result, ds, epochs):
    """Every epoch recorded with finite losses; model.keras reproduces metrics.json."""
    from resnet_tl.models.saving import load_keras_model

    assert [r["epoch"] for r in result.history] == list(range(1, epochs + 1))
    assert all(np.isfinite([r["loss"], r["val_loss"]]).all() for r in result.history)
    model = load_keras_model(result.run_dir / "model.keras")
    probs = np.asarray(model.predict(ds.x_val.astype("float32"), verbose=0))
    assert np.mean(probs.argmax(1) == ds.y_val) == pytest.approx(result.metrics["accuracy"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("mix", [{"cutmix": 1.0}, {"mixup": 0.4}])
def test_head_phase_with_cutmix_or_mixup_trains_on_live_images(tmp_path, mix):
    """Mixing happens on images, so the head phase trains live; on main CutMix
    crashed on cached (N, C) features and mixup mixed feature vectors."""
    result, ds = _two_phase(tmp_path, "mix", mix)
    assert [p["cached_features"] for p in result.phases] == [False, False]
    _check_run(result, ds, 2)


@pytest.mark.slow
def test_augmented_feature_cache_views_train(tmp_path):
    result, ds = _two_phase(tmp_path, "views", {"flip": "horizontal"}, {"feature_cache_views": 2}, head_epochs=2)
    assert result.phases[0]["cached_features"] and result.phases[0]["feature_cache_views"] == 2
    assert result.phases[0]["augmented_views"]
    _check_run(result, ds, 3)


@pytest.mark.slow
def test_adamw_label_smoothing_and_class_weights_train(tmp_path):
    ds = bars_dataset(n_per_class=8, n_val_per_class=4)
    keep = np.r_[np.flatnonzero(ds.y_train == 0), np.flatnonzero(ds.y_train == 1)[:3]]  # 8 vs 3 images
    ds.x_train, ds.y_train = ds.x_train[keep], ds.y_train[keep]
    phase = {"optimizer": "adamw", "weight_decay": 0.05, "label_smoothing": 0.1}
    result, ds = _two_phase(tmp_path, "adamw", {}, phase, {"class_weight": "balanced"}, ds=ds)
    _check_run(result, ds, 2)


def test_val_loss_is_plain_cross_entropy_in_every_phase(tmp_path):
    """Best-epoch choice compares val_loss across phases with different label
    smoothing: it must be the unsmoothed cross-entropy in each."""
    from resnet_tl.models.classifier import feature_extractor, head_of
    from resnet_tl.models.saving import load_keras_model

    ds = bars_dataset(n_per_class=8, n_val_per_class=4)
    recipe = tiny_recipe(
        [{"name": "a", "epochs": 1, "train": "head", "lr": 1e-2},
         # lr 1e-12 leaves the weights as they are: the same model, smoothing 0.5.
         {"name": "b", "epochs": 1, "train": "head", "lr": 1e-12, "label_smoothing": 0.5}],
        train={"monitor": "val_loss"})
    result = train(recipe, out=tmp_path, name="ls", dataset=ds)
    a, b = result.history
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
    # Cross-entropy from the saved model's logits in float64 (Keras computes it
    # from the logits too, unclipped, so saturated softmax outputs count fully).
    model = load_keras_model(result.run_dir / "model.keras")
    features = np.asarray(feature_extractor(model).predict(ds.x_val.astype("float32"), verbose=0), np.float64)
    kernel, bias = (np.asarray(w, np.float64) for w in head_of(model).get_layer("head_logits").get_weights())
    logits = features @ kernel + bias
    top = logits.max(1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(1))
    numpy_ce = float(np.mean(log_z - logits[np.arange(len(ds.y_val)), ds.y_val]))
    assert a["val_loss"] == pytest.approx(numpy_ce, rel=1e-4)


def test_train_leaves_global_state_as_it_found_it(tmp_path):
    import random

    import keras
    import matplotlib

    from resnet_tl.kerasenv import keras_module

    matplotlib.use("svg")  # a backend the caller chose; the run draws its curves anyway
    keras.config.set_dtype_policy("mixed_bfloat16")
    random.seed(7)
    np.random.seed(7)
    before = (random.getstate(), np.random.get_state()[1].copy(), keras_module().config.dtype_policy().name)
    ds = bars_dataset(n_per_class=4, n_val_per_class=2)
    try:
        result = train(tiny_recipe([{"epochs": 1, "train": "head"}]), out=tmp_path, name="g", dataset=ds)
        after = (random.getstate(), np.random.get_state()[1].copy(), keras.config.dtype_policy().name)
        backend = matplotlib.get_backend()
    finally:
        keras.config.set_dtype_policy("float32")
    assert (result.run_dir / "plots" / "curves.png").stat().st_size > 1000
    assert after[0] == before[0] and np.array_equal(after[1], before[1])
    assert after[2] == "mixed_bfloat16"
    assert backend == "svg"


def test_run_folder_stores_absolute_paths(tmp_path, monkeypatch):
    """resume, evaluate and export read the stored recipe, from any folder."""
    from helpers import bars_folder

    from resnet_tl.evaluation.evaluate import evaluate
    from resnet_tl.recipe import build_recipe

    monkeypatch.chdir(tmp_path)
    bars_folder(tmp_path / "images", n_per_class=6)
    recipe = build_recipe({
        "name": "rel", "data": {"dir": "images", "image_size": 16, "cache_dir": "cache", "augment": {"flip": "none"}},
        "model": {"backbone": "resnet8"}, "schedule": [{"epochs": 1, "train": "head"}],
        "train": {"batch_size": 8, "precision": "float32"},
    })
    result = train(recipe, out="runs", name="r")
    stored = yaml.safe_load((tmp_path / "runs" / "r" / "recipe.yaml").read_text())
    assert stored["data"]["dir"] == str(tmp_path.resolve() / "images")
    assert stored["data"]["cache_dir"] == str(tmp_path.resolve() / "cache")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    metrics = evaluate(tmp_path / "runs" / "r")
    assert metrics["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-6)
