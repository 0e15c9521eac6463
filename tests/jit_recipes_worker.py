"""Build the training model of every shipped recipe in this process's Keras backend and
report whether it stays jit-compiled; run by tests/training/test_recipes_compile.py once
per backend (KERAS_BACKEND is fixed at import, hence a process each).

    KERAS_BACKEND=jax PYTHONPATH=. python tests/jit_recipes_worker.py

Prints one JSON document: per recipe, the trainer's `jit_compile` after compile() and the
warnings Keras gave, and whether one XLA training step ran through every augmentation op
(TensorFlow only finds ops without an XLA kernel when the step is compiled).
"""

from __future__ import annotations

import json
import warnings

import numpy as np

from resnet_tl.kerasenv import keras_module
from resnet_tl.recipe import build_recipe, load_recipe, shipped_recipes
from resnet_tl.training.augment import build_augmenter
from resnet_tl.training.bench import build_trainer, synthetic
from resnet_tl.training.precision import configure

SIZE = 32  # every shipped backbone builds at 32 px; augmentation does not depend on the size
TINY = ["data.image_size=32", "train.jit_compile=true", "train.precision=float32", "train.batch_size=4"]
# Every option at once, beyond what the shipped recipes use.
EVERYTHING = {"flip": "both", "rotation": 0.1, "zoom": 0.1, "crop": 0.5, "contrast": 0.2, "brightness": 0.2,
              "policy": "randaugment", "erasing": 0.25}
# Flips without other geometry are exact reversals, a separate code path.
WITHOUT_RESAMPLING = {"flip": "both", "contrast": 0.2, "brightness": 0.2, "erasing": 0.25}


def trainer_report(recipe) -> dict:
    keras = keras_module()
    setup = configure(recipe.train)
    x, y = synthetic(8, SIZE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _, _ = build_trainer(recipe, setup, x, y)
    keras.backend.clear_session()
    return {"jit_compile": model.jit_compile, "warnings": [str(w.message) for w in caught if "jit_compile" in str(w.message)]}


def xla_step(augment: dict) -> bool:
    """One jit-compiled training step of augmenter -> pooled dense head."""
    keras = keras_module()
    cfg = build_recipe({"data": {"augment": augment}}).data.augment
    aug = build_augmenter(cfg, SIZE, 0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = aug(inputs) if aug is not None else inputs
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    model.compile("sgd", "mse", jit_compile=True)
    model.fit(np.zeros((4, SIZE, SIZE, 3), "float32"), np.zeros((4, 2)), batch_size=4, epochs=1, verbose=0)
    return bool(model.jit_compile)


def main() -> None:
    keras = keras_module()
    out = {"backend": keras.backend.backend(), "recipes": {}, "augmentations": []}
    for name, path in shipped_recipes().items():
        out["recipes"][name] = trainer_report(load_recipe(str(path), TINY))
    everything = load_recipe(str(shipped_recipes()["two-phase"]),
                             TINY + [f"data.augment.{k}={v}" for k, v in EVERYTHING.items()])
    out["recipes"]["two-phase + every augmentation"] = trainer_report(everything)
    # Two layers cover every op: one resampling path with everything, one without resampling.
    out["augmentations"] = [{"augment": a, "xla_step": xla_step(a)} for a in (EVERYTHING, WITHOUT_RESAMPLING)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
