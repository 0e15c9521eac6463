"""Training, input and inference throughput of a recipe's model on synthetic data.

`benchmark(recipe)` builds the recipe's classifier at its image size on the
current device and distribution, once per precision asked for, and trains
it as `train` does (augmentation on the device, the trainer's own uint8
batches, its optimizer, `fit`). Separately it times the input path alone
(the same batches, built ahead in threads) and reports input/training: below
1 the loader limits, above 1 the device does. `peer=True` also trains plain
Keras (`keras.applications`, numpy arrays, `fit`) on the same batch size and
precision. Compilation and the first `warmup` steps are never timed; a step
time is the median of the per-step intervals, so a spike from another job on
a shared machine does not move it.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from resnet_tl.data.prefetch import loader_workers
from resnet_tl.models.batched import predict_probs
from resnet_tl.kerasenv import keras_module
from resnet_tl.models.backbones import BACKBONES
from resnet_tl.models.weights import parse_weights
from resnet_tl.models.classifier import build_classifier
from resnet_tl.recipe import PhaseConfig
from resnet_tl.training.precision import configure
from resnet_tl.training.augment import build_augmenter
from resnet_tl.training.batches import keras_batches
from resnet_tl.training.schedule import Phase, all_stages
from resnet_tl.training.stages import apply_freezing, phase_optimizer

keras = keras_module()

N_CLASSES = 10
INPUT_MIN_SECONDS = 0.5  # the loader is timed for at least this long (and 3 epochs)


def cpu_seconds() -> float:
    """CPU seconds of this process, all threads (user + system)."""
    t = os.times()
    return t.user + t.system


def step_times(keras, model, data, warmup: int, cpu: list | None = None, **fit_kwargs) -> list[float]:
    """Wall seconds of every step after the first `warmup` steps of one `fit` epoch.

    cpu: a list that receives each of those steps' CPU seconds (all threads of
    this process): unlike wall time, barely moved by other jobs on the machine.
    """
    marks: list[tuple[float, float]] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 >= warmup:
                marks.append((time.perf_counter(), cpu_seconds()))

    model.fit(data, epochs=1, verbose=0, callbacks=[Timer()], shuffle=False, **fit_kwargs)
    if len(marks) < 2:
        raise ValueError(f"need more than {warmup} steps to time; received {len(marks)} after warm-up")
    if cpu is not None:
        cpu.extend(b[1] - a[1] for a, b in zip(marks, marks[1:]))
    return [b[0] - a[0] for a, b in zip(marks, marks[1:])]


def synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random pixels uint8 (n, size, size, 3) and labels int32 (n,) of N_CLASSES classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, N_CLASSES, n).astype(np.int32)


def _batches(x, y, batch_size, seed, setup):
    """The trainer's own training batches."""
    return keras_batches(x, y, N_CLASSES, batch_size, seed, True, setup=setup)


def build_trainer(recipe, setup, x, y):
    """(compiled training model, classifier, batches) as `train` builds them: every
    stage training, augmentation on the device, the trainer's uint8 batches of x, y."""
    tc, size = recipe.train, recipe.data.image_size
    spec = BACKBONES[recipe.model.backbone]
    # Random weights time the same, and need no download.
    weights = "none" if parse_weights(recipe.model.weights).downloads else recipe.model.weights
    keras.utils.set_random_seed(tc.seed)
    batches = _batches(x, y, tc.batch_size, tc.seed, setup)
    with setup.scope():
        classifier = build_classifier(recipe.model.model_copy(update={"weights": weights}), N_CLASSES, size)
        augmenter = build_augmenter(recipe.data.augment, size, tc.seed)
        phase = Phase(0, "bench", PhaseConfig(train="all", batchnorm="train"), all_stages(spec.stages))
        apply_freezing(classifier, phase)
        inputs = keras.Input((size, size, 3), name="image")
        model = keras.Model(inputs, classifier(augmenter(inputs) if augmenter is not None else inputs), name="trainer")
        model.compile(
            optimizer=phase_optimizer(classifier, phase, spec.stages, len(batches)),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=setup.jit_compile, steps_per_execution=tc.steps_per_execution,
        )
    return model, classifier, batches


def build_peer(recipe, setup):
    """Plain Keras for the recipe's backbone: the keras.applications model with its
    own top, Adam, compiled like a Keras guide does; None when Keras has no such model."""
    app = BACKBONES[recipe.model.backbone].keras_application
    if app is None:
        return None
    size = recipe.data.image_size
    keras.utils.set_random_seed(recipe.train.seed)
    with setup.scope():
        model = getattr(keras.applications, app)(weights=None, input_shape=(size, size, 3), classes=N_CLASSES)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=setup.jit_compile)
    return model


def peer_arrays(x, y) -> tuple[np.ndarray, np.ndarray]:
    """What plain Keras is fed: float32 pixels and one-hot float32 labels."""
    return x.astype(np.float32), np.eye(N_CLASSES, dtype=np.float32)[y]


def input_images_per_s(x, y, batch_size: int, setup=None, seed: int = 0) -> float:
    """Images/s of the trainer's batches alone (uint8, built ahead in threads), read
    in order as `fit` reads them, over whole epochs: at least 3 and INPUT_MIN_SECONDS."""
    batches = _batches(x, y, batch_size, seed, setup)
    batches[0]  # thread pool up, pages mapped
    images, epoch, t0 = 0, 0, time.perf_counter()
    while epoch < 3 or time.perf_counter() - t0 < INPUT_MIN_SECONDS:
        batches.set_epoch(epoch)
        for i in range(len(batches)):
            images += len(batches[i][0])
        epoch += 1
    return images / (time.perf_counter() - t0)


def benchmark(
    recipe, *, steps: int = 10, batch_size: int | None = None, warmup: int = 2, inference: bool = True,
    precisions: list[str] | None = None, peer: bool = False,
) -> dict:
    """Images/s of training (all stages), input and inference for `recipe`'s model.

    batch_size: default the recipe's train.batch_size (global). precisions:
    default the recipe's train.precision. Returns a plain dict: machine and
    setup fields, input_images_per_s (host loader, all precisions), and
    `results`, one dict per precision: train/inference/peer images per second,
    input_over_train (input images/s / training images/s) and limited_by
    ("input" when that ratio is below 1, else "compute").
    """
    tc = recipe.train if batch_size is None else recipe.train.model_copy(update={"batch_size": batch_size})
    recipe = recipe.model_copy(update={"train": tc})
    size, bs = recipe.data.image_size, tc.batch_size
    x, y = synthetic(bs * (warmup + steps), size)
    previous = keras.config.dtype_policy()
    results, setup = [], None
    try:
        for precision in precisions or [tc.precision]:
            r = recipe.model_copy(update={"train": tc.model_copy(update={"precision": precision})})
            setup = configure(r.train)
            model, classifier, batches = build_trainer(r, setup, x, y)
            train_s = statistics.median(step_times(keras, model, batches, warmup))
            row = {"precision": setup.precision, "train_images_per_s": round(bs / train_s, 2)}
            if peer:
                peer_model = build_peer(r, setup)
                row["peer_train_images_per_s"] = row["vs_peer"] = None
                if peer_model is not None:
                    px, py = peer_arrays(x, y)
                    peer_s = statistics.median(step_times(keras, peer_model, px, warmup, y=py, batch_size=bs))
                    row["peer_train_images_per_s"], row["vs_peer"] = round(bs / peer_s, 2), round(peer_s / train_s, 3)
            row["inference_images_per_s"] = None
            if inference:
                predict_probs(classifier, x[: bs * warmup], bs)
                t0 = time.perf_counter()
                predict_probs(classifier, x[bs * warmup:], bs)
                row["inference_images_per_s"] = round(bs * steps / (time.perf_counter() - t0), 2)
            results.append(row)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    # Rounded first, so the ratio is the quotient of the two figures the report shows
    # (dividing the shown 355.9 by the shown train figure gives the shown ratio).
    input_ips = round(input_images_per_s(x, y, bs, setup, tc.seed), 1)
    for row in results:
        row["input_over_train"] = round(input_ips / row["train_images_per_s"], 2)
        row["limited_by"] = "input" if row["input_over_train"] < 1 else "compute"
    return {
        "backbone": recipe.model.backbone, "image_size": size, "batch_size": bs, "steps": steps,
        "device": ", ".join(d.name for d in setup.devices), "backend": setup.backend,
        "jit_compile": setup.jit_compile, "distribute": setup.distribute, "replicas": setup.num_replicas,
        "loader_workers": loader_workers(), "input_images_per_s": input_ips, "results": results,
    }
