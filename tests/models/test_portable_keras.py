"""model.keras loads with plain Keras where resnet_tl cannot be imported, and predicts the same."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

# Runs in a fresh interpreter: resnet_tl is made unimportable (it is installed
# editable, so a path trick alone would not hide it), then the file is loaded
# the way a user without our package would load it.
_LOADER = textwrap.dedent("""
    import importlib.abc, os, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "resnet_tl" or name.startswith("resnet_tl."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
    sys.meta_path.insert(0, Block())
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras, numpy as np
    x = np.load(sys.argv[1])
    for path in sys.argv[2:]:
        model = keras.saving.load_model(path)
        np.save(path + ".npy", keras.ops.convert_to_numpy(model(x)))
    assert not any(m.startswith("resnet_tl") for m in sys.modules), "resnet_tl was imported"
""")


def load_without_resnet_tl(paths, x: np.ndarray, tmp_path) -> list[np.ndarray]:
    """Each .keras file in `paths` loaded in an interpreter that cannot import resnet_tl, run on `x`."""
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-I", "-c", _LOADER, str(tmp_path / "x.npy"), *map(str, paths)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [np.load(f"{p}.npy") for p in paths]


def test_classifier_and_every_preprocessing_mode_load_without_resnet_tl(tmp_path):
    import keras

    from resnet_tl.models.classifier import build_classifier, preprocess
    from resnet_tl.recipe import build_recipe

    x = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.float32)
    models = {"classifier": build_classifier(build_recipe({"model": {"backbone": "resnet8", "weights": "none"}}).model, 3, 16)}
    for mode in ("caffe", "tf", "torch"):  # ResNet v1 (Keras), v2, and ours/torchvision's; a full ResNet-50 is too slow here
        inputs = keras.Input((16, 16, 3))
        x_ = keras.layers.GlobalAveragePooling2D()(preprocess(inputs, mode))
        models[mode] = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x_))
    paths = []
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
        paths.append(tmp_path / f"{name}.keras")
    for (name, model), probs in zip(models.items(), load_without_resnet_tl(paths, x, tmp_path)):
        np.testing.assert_allclose(probs, np.asarray(model(x)), atol=1e-6, err_msg=name)


def test_preprocess_matches_the_old_custom_layer():
    """The built-in layers compute what `Preprocess` computed, for every mode (old runs and new agree)."""
    import keras

    from resnet_tl.models.classifier import preprocess
    from resnet_tl.models.saving import Preprocess

    x = np.random.default_rng(1).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    for mode in ("caffe", "tf", "torch"):
        inputs = keras.Input((5, 5, 3))
        new = np.asarray(keras.Model(inputs, preprocess(inputs, mode))(x))
        np.testing.assert_allclose(new, np.asarray(Preprocess(mode)(x)), atol=1e-5, rtol=1e-6)
