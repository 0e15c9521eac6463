"""Training and inference throughput of a recipe's model on synthetic data.

`benchmark(recipe)` builds the recipe's classifier at its image size on the
current device, precision and distribution (as `train` would), trains it on
random pixels through the trainer's own batches and `fit`, then runs the
inference path that evaluation uses. Compilation and the first `warmup`
steps are not timed.
"""

from __future__ import annotations

import time

import numpy as np

N_CLASSES = 10


def _timer_callback(keras, warmup: int, marks: list):
    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 >= warmup:
                marks.append(time.perf_counter())

    return Timer()


def timed_fit(keras, model, data, warmup: int, **fit_kwargs) -> float:
    """Seconds per step of `model.fit(data, epochs=1)` after `warmup` steps."""
    marks: list[float] = []
    model.fit(data, epochs=1, verbose=0, callbacks=[_timer_callback(keras, warmup, marks)], **fit_kwargs)
    if len(marks) < 2:
        raise ValueError(f"need more than {warmup} steps to time; received {len(marks)} after warm-up")
    return (marks[-1] - marks[0]) / (len(marks) - 1)


def benchmark(recipe, *, steps: int = 10, batch_size: int | None = None, warmup: int = 2, inference: bool = True) -> dict:
    """Images/s of training (all stages) and inference for `recipe`'s model.

    batch_size: default the recipe's train.batch_size (global). Returns a
    plain dict: device, backend, precision, jit_compile, distribute,
    batch_size, image_size, backbone, train/inference images per second.
    """
    from resnet_tl import precision as precision_mod
    from resnet_tl.backbones import BACKBONES
    from resnet_tl.runtimes import predict_probs
    from resnet_tl.kerasenv import keras_module
    from resnet_tl.model import build_classifier
    from resnet_tl.recipe import PhaseConfig
    from resnet_tl.schedule import Phase, all_stages, apply_freezing, phase_optimizer
    from resnet_tl.data.batches import keras_batches

    keras = keras_module()
    tc = recipe.train
    if batch_size is not None:
        tc = tc.model_copy(update={"batch_size": batch_size})
    setup = precision_mod.configure(tc)
    bs, size = tc.batch_size, recipe.data.image_size
    spec = BACKBONES[recipe.model.backbone]
    keras.utils.set_random_seed(tc.seed)
    rng = np.random.default_rng(0)
    n = bs * (warmup + steps)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, N_CLASSES, n).astype(np.int32)
    # Random weights time the same, and need no download.
    weights = "none" if recipe.model.weights == "imagenet" or recipe.model.weights.startswith("hf://") else recipe.model.weights
    model_cfg = recipe.model.model_copy(update={"weights": weights})

    with setup.scope():
        classifier = build_classifier(model_cfg, N_CLASSES, size)
        phase = Phase(0, "bench", PhaseConfig(train="all", batchnorm="train"), all_stages(spec.stages))
        apply_freezing(classifier, phase)
        classifier.compile(
            optimizer=phase_optimizer(classifier, phase, spec.stages, warmup + steps),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=setup.jit_compile, steps_per_execution=tc.steps_per_execution,
        )
    batches = keras_batches(x, y, N_CLASSES, bs, tc.seed, True, setup=setup)
    train_s = timed_fit(keras, classifier, batches, warmup)
    out = {
        "backbone": recipe.model.backbone, "image_size": size, "batch_size": bs,
        "device": ", ".join(d.name for d in setup.devices), "backend": setup.backend,
        "precision": setup.precision, "jit_compile": setup.jit_compile, "distribute": setup.distribute,
        "replicas": setup.num_replicas, "steps": steps,
        "train_images_per_s": round(bs / train_s, 2), "inference_images_per_s": None,
    }
    if inference:
        predict_probs(classifier, x[: bs * warmup], bs)
        t0 = time.perf_counter()
        predict_probs(classifier, x[bs * warmup:], bs)
        out["inference_images_per_s"] = round(bs * steps / (time.perf_counter() - t0), 2)
    return out
