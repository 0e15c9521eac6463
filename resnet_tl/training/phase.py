"""One phase's compiled model and its batches; `PhaseFitter.train_one_epoch` is one `fit` call.

A head-only phase trains the head on backbone features computed once (the
feature cache, see `schedule.feature_cache`); every other phase trains
``augment -> classifier`` on pixels. The classifier itself is never compiled,
so model.keras carries no optimizer and loads anywhere.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from resnet_tl import faults
from resnet_tl.data.batches import class_weights
from resnet_tl.kerasenv import keras_module
from resnet_tl.models.backbones import BACKBONES
from resnet_tl.models.batched import predict_batched, predict_probs
from resnet_tl.models.classifier import feature_extractor, head_of
from resnet_tl.recipe import Recipe
from resnet_tl.training.augment import build_augmenter, is_identity
from resnet_tl.training.batches import keras_batches
from resnet_tl.training import interrupt
from resnet_tl.training.checkpoint import assign
from resnet_tl.training.ema import EMAUpdate
from resnet_tl.training.schedule import Phase, lr_at
from resnet_tl.training.stages import phase_optimizer

keras = keras_module()

# Phase i shuffles with seed + i * PHASE_SEED_STRIDE (and seeds its cached views' augmenter so):
# each phase sees its own sequence of epoch orders, and a prime keeps them apart for any seed.
PHASE_SEED_STRIDE = 7919


class PhaseFitter:
    """One phase's compiled model and its batches: the head on cached features,
    or augmenter -> classifier on pixels. `train_one_epoch` is one `fit` call."""

    def __init__(self, recipe: Recipe, phase: Phase, classifier, augmenter, ds, setup, ema=None, learning_rate=None):
        """ema: a training.ema.WeightEMA to update after every step; validation then scores
        the averaged weights. learning_rate: replaces the phase's lr curve (lr-find)."""
        tc, dc, cfg = recipe.train, recipe.data, phase.config
        self.tc, self.phase, self.ds, self.setup = tc, phase, ds, setup
        self.classifier, self.ema = classifier, ema
        self.n_classes = len(ds.classes)
        self.class_weight = class_weights(ds.y_train, list(ds.classes), tc.class_weight)
        self.mix = {"mixup": dc.augment.mixup, "cutmix": dc.augment.cutmix} if (dc.augment.mixup or dc.augment.cutmix) else None
        # Multi-worker runs train the head live: cached features would need
        # eager calls on weights that span other processes.
        self.cached = phase.uses_feature_cache and setup.num_processes == 1
        if self.cached:
            extractor = feature_extractor(classifier)
            self.val_inputs = features(extractor, ds.x_val, tc.batch_size, None)
            # The views' augmenter is seeded by (seed, phase), not taken from the
            # training augmenter's running state: a resumed phase rebuilds the
            # same views.
            view_augmenter = (build_augmenter(dc.augment, dc.image_size, tc.seed + PHASE_SEED_STRIDE * phase.index)
                              if phase.augmented_views else None)
            self.views = [features(extractor, ds.x_train, tc.batch_size, view_augmenter) for _ in range(phase.cache_views)]
            if not phase.augmented_views and not is_identity(dc.augment):
                warnings.warn(
                    f"phase '{phase.name}': the head trains on cached features of unaugmented images (feature_cache_views: 1) "
                    "although data.augment asks for augmentation; set feature_cache_views > 1 for augmented views, "
                    "or cache_features: false to train on live images", stacklevel=2)
            head = head_of(classifier)
            feat_in = keras.Input(head.input_shape[1:], name="features")
            self.model = keras.Model(feat_in, head(feat_in), name="head_trainer")
        else:
            # Always a wrapper: the classifier itself is never compiled, so
            # model.keras carries no optimizer and loads anywhere.
            with setup.scope():
                inputs = keras.Input((dc.image_size, dc.image_size, 3), name="image")
                x = augmenter(inputs) if augmenter is not None else inputs
                self.model = keras.Model(inputs, classifier(x), name="trainer")
            self.val_inputs = ds.x_val
        self.steps = len(keras_batches(ds.x_train, ds.y_train, self.n_classes, tc.batch_size, 0, True, setup=setup))
        with setup.scope():
            stages = BACKBONES[recipe.model.backbone].stages
            self.optimizer = phase_optimizer(classifier, phase, stages, self.steps, learning_rate)
            self.model.compile(
                optimizer=self.optimizer,
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                # Plain cross-entropy beside the loss: val_loss must mean the same
                # in every phase (best-epoch choice compares across phases), and
                # the loss carries each phase's own label smoothing.
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"), keras.metrics.CategoricalCrossentropy(name="ce")],
                jit_compile=setup.jit_compile,
                steps_per_execution=tc.steps_per_execution,
            )

    def restore_optimizer(self, arrays: dict) -> None:
        self.optimizer.build(self.model.trainable_variables)
        assign(self.optimizer.variables, arrays, "optimizer/", "optimizer")

    def train_one_epoch(self, e: int, epoch_number: int, notify) -> dict:
        """Epoch `e` of this phase (0-based); returns its history row."""
        tc, cfg, ds = self.tc, self.phase.config, self.ds
        t0 = time.time()
        batches = self.epoch_batches(e)
        val_batches = None if self.ema else keras_batches(self.val_inputs, ds.y_val, self.n_classes, tc.batch_size, tc.seed,
                                                           False, setup=self.setup)
        cb = EpochNotifier(notify, self.phase, epoch_number, len(batches), tc.batch_size)
        # shuffle=False: our batches are already shuffled per (seed, phase, epoch);
        # Keras would reorder them again with the process-global `random`.
        callbacks = [cb] if self.ema is None else [EMAUpdate(self.ema), cb]
        h = self.model.fit(batches, validation_data=val_batches, epochs=1, verbose=0,
                           callbacks=callbacks, shuffle=False)
        logs = {k: float(v[-1]) for k, v in h.history.items()}
        if self.ema is not None:
            logs.update(self.ema_validation())
        return {
            "phase": self.phase.name, "epoch": epoch_number,
            "lr": float(f"{lr_at((e + 1) * self.steps - 1, self.steps, cfg):.6g}"),
            "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
            "val_loss": logs.get("val_ce"), "val_accuracy": logs.get("val_accuracy"),
            "seconds": round(time.time() - t0, 3),
        }


    def epoch_batches(self, e: int):
        """The training batches of epoch `e` of this phase (a PyDataset), in that epoch's order."""
        tc, ds = self.tc, self.ds
        x_tr = self.views[e % len(self.views)] if self.cached else ds.x_train
        batches = keras_batches(x_tr, ds.y_train, self.n_classes, tc.batch_size, tc.seed + PHASE_SEED_STRIDE * self.phase.index,
                                True, self.class_weight, self.mix, self.setup)
        batches.set_epoch(e)
        return batches

    def ema_validation(self) -> dict:
        """val_ce and val_accuracy of the averaged weights, through the whole classifier on
        pixels: a cached phase's features came from the live backbone, not the average."""
        with self.ema.applied():
            probs = predict_probs(self.classifier, self.ds.x_val, self.tc.batch_size)
        y = np.asarray(self.ds.y_val)
        if not len(y):
            return {"val_ce": float("nan"), "val_accuracy": float("nan")}
        # Keras's CategoricalCrossentropy on probabilities clips them to [1e-7, 1 - 1e-7].
        p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1 - 1e-7)
        return {"val_ce": float(-np.mean(np.log(p_true))), "val_accuracy": float(np.mean(probs.argmax(1) == y))}


def features(extractor, x, batch_size, augmenter) -> np.ndarray:
    """Pooled backbone features (N, C) float32, optionally of one augmented view."""
    augment = None if augmenter is None else (lambda xb: np.asarray(augmenter(xb, training=True)))
    return predict_batched(extractor, x, batch_size, augment)


class EpochNotifier(keras.callbacks.Callback):
    """Turns batch ends into progress events (and gives the fault-injection tests their 'batch' point)."""

    def __init__(self, notify, phase: Phase, epoch: int, steps: int, batch_size: int):
        super().__init__()
        self.notify, self.phase, self.epoch, self.steps, self.batch_size = notify, phase, epoch, steps, batch_size

    def on_train_batch_end(self, batch, logs=None):
        faults.point("batch")
        interrupt.check()
        self.notify({"event": "batch", "phase": self.phase.name, "epoch": self.epoch, "step": batch + 1,
                     "steps": self.steps, "batch_size": self.batch_size, "loss": float((logs or {}).get("loss", float("nan")))})
