"""Backbone table, published parameter counts, stage names and weight files.

Random weights and tiny inputs only; nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import ROOT

from resnet_tl.models import backbones, resnets
from resnet_tl.models.backbones import BACKBONES, stage_of
from resnet_tl.models.resnets import build_backbone, reference_classifier
from resnet_tl.errors import UserError


# torchvision's resnet18/34 with the 1000-class fc; trainable parameters
# (torchvision counts BatchNorm running statistics as buffers, not parameters).
# The v1.5 bottleneck nets are torchvision's resnet50/101/152 (num_params in
# torchvision's docs for ResNet50_Weights, ResNet101_Weights, ResNet152_Weights).
TORCHVISION_TRAINABLE = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50v1.5": 25_557_032,
                         "resnet101v1.5": 44_549_160, "resnet152v1.5": 60_192_808}
# He et al. 2016, Table 6 (CIFAR-10, 10 classes), in millions as the paper prints them.
CIFAR_PAPER = {"resnet20": "0.27", "resnet32": "0.46", "resnet44": "0.66", "resnet56": "0.85", "resnet110": "1.7"}
# The same nets with option A shortcuts, trainable parameters as the PyTorch
# reproductions count them (e.g. akamaster/pytorch_resnet_cifar10's resnet.py).
# resnet8 (n = 1) is not in the paper's table; its count follows the same definition
# (ResNet(BasicBlock, [1, 1, 1]) there), by hand: stem 3x3x3x16 + BN 32 = 464; one block per stage,
# 16: 2x(9x16x16 + 32) = 4,672; 32: 9x16x32 + 9x32x32 + 2x64 = 13,952; 64: 9x32x64 + 9x64x64 + 2x128 = 55,552;
# fc 64x10 + 10 = 650. The same sums with n = 3 give resnet20's 269,722.
CIFAR_OPTION_A = {"resnet8": 75_290, "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018, "resnet110": 1_727_962}
KERAS_RESNET50_WITH_TOP = 25_636_712


def _trainable(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def _input_size(spec) -> int:
    return 32 if spec.family == "cifar" else 64


# Module scope: each classifier is built once and shared by the tests below
# (pytest groups the tests by fixture parameter).
@pytest.fixture(scope="module", params=list(BACKBONES))
def classifier(request):
    spec = BACKBONES[request.param]
    model = reference_classifier(spec.name, classes=10 if spec.family == "cifar" else 1000, image_size=_input_size(spec))
    yield spec, model
    keras.backend.clear_session()


# ---------------------------------------------------------------- the table
@pytest.mark.parametrize("name", list(BACKBONES))
def test_depth_in_name_matches_blocks(name):
    spec = BACKBONES[name]
    layers_per_block = 3 if spec.bottleneck else 2
    assert layers_per_block * sum(spec.depths) + 2 == int(re.match(r"resnet(\d+)", name).group(1))
    assert len(spec.stages) == len(spec.depths) + 1 and spec.stages[0] == "stem"


def test_keras_application_rows_name_real_keras_constructors():
    # The table derives these names; Keras must have each one (ImageNet weights come with it).
    apps = {n: s.keras_application for n, s in BACKBONES.items() if s.keras_application}
    assert set(apps) == {"resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2"}
    assert all(callable(getattr(keras.applications, a, None)) for a in apps.values()), apps


# -------------------------------------------------------- parameter counts
def test_parameter_count(classifier):
    spec, model = classifier
    if spec.name in TORCHVISION_TRAINABLE:
        assert _trainable(model) == TORCHVISION_TRAINABLE[spec.name]
    elif spec.family == "cifar":
        # Trainable: the paper counts learned weights, not BatchNorm statistics.
        # Option A shortcuts have none; projections (option B) would add 2,752
        # and miss the paper's 0.46M and 0.85M.
        count = _trainable(model)
        if spec.name in CIFAR_PAPER:
            decimals = len(CIFAR_PAPER[spec.name].split(".")[1])
            assert f"{count / 1e6:.{decimals}f}" == CIFAR_PAPER[spec.name]
        assert count == CIFAR_OPTION_A[spec.name]
    else:
        constructor = getattr(keras.applications, spec.keras_application)
        reference = constructor(include_top=True, weights=None, classes=1000)
        assert model.count_params() == reference.count_params()
        if spec.name == "resnet50":
            assert model.count_params() == KERAS_RESNET50_WITH_TOP


# ---------------------------------------------------------- layout, stages
def test_every_layer_has_a_stage(classifier):
    spec, model = classifier
    stages = {stage_of(layer.name, spec) for layer in model.get_layer(spec.name).layers}
    assert stages == set(spec.stages)


def test_feature_map_shape(classifier):
    spec, model = classifier
    side = 8 if spec.family == "cifar" else 2  # total stride 4 vs 32
    assert model.get_layer(spec.name).output.shape == (None, side, side, spec.feature_channels)


@pytest.mark.parametrize("name, size, expected", [("resnet18", 64, (2, 2, 2, 512)), ("resnet20", 32, (2, 8, 8, 64))])
def test_forward_pass(name, size, expected):
    images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    features = keras.ops.convert_to_numpy(build_backbone(name, size)(images, training=False))
    assert features.shape == expected and np.isfinite(features).all()


def test_cifar_shortcut_is_subsampled_identity_with_zero_channels():
    # Option A, computed independently in numpy from the previous block's output.
    backbone = build_backbone("resnet20", 16)
    probe = keras.Model(backbone.input, [backbone.get_layer("conv2_block3_out").output,
                                         backbone.get_layer("conv3_block1_0_unflat").output])
    images = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
    before, shortcut = (keras.ops.convert_to_numpy(t) for t in probe(images))
    expected = np.zeros((2, 8, 8, 32), "float32")
    expected[..., 8:24] = before[:, ::2, ::2, :]
    np.testing.assert_array_equal(shortcut, expected)
    assert not any("_0_conv" in layer.name for layer in backbone.layers)


def test_stage_of_rejects_unknown_names():
    with pytest.raises(ValueError, match="no stage"):
        stage_of("dense", BACKBONES["resnet50"])
    with pytest.raises(ValueError, match="no stage"):
        stage_of("post_bn", BACKBONES["resnet50"])  # only v2 has post_bn
    with pytest.raises(ValueError, match="no stage"):
        stage_of("conv5_block1_out", BACKBONES["resnet20"])  # CIFAR nets stop at conv4
    assert stage_of("post_relu", BACKBONES["resnet50v2"]) == "conv5"


def test_too_small_input_is_refused():
    with pytest.raises(UserError, match=r"data.image_size: received 16 for backbone 'resnet50'; allowed: >= 32"):
        build_backbone("resnet50", 16)


# ------------------------------------------------------------ weight files
def _randomised(model: keras.Model, seed: int) -> keras.Model:
    # Random values in every variable, BatchNorm statistics included, so a
    # variable that failed to load cannot pass by sharing its initial value.
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _assert_same_weights(a: keras.Model, b: keras.Model):
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(x, y)


def test_weights_h5_round_trip(tmp_path):
    keras.utils.set_random_seed(1)
    saved = build_backbone("resnet18", 32)
    keras.utils.set_random_seed(2)
    fresh = build_backbone("resnet18", 32)
    assert not np.array_equal(saved.weights[0].numpy(), fresh.weights[0].numpy())  # seeds matter
    saved.save_weights(tmp_path / "x.weights.h5")
    keras.utils.set_random_seed(2)
    _assert_same_weights(build_backbone("resnet18", 32, weights=str(tmp_path / "x.weights.h5")), saved)


def test_keras_file_of_a_classifier_holding_the_backbone(tmp_path):
    backbone = _randomised(build_backbone("resnet18", 32), seed=3)
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(backbone(inputs)))
    keras.Model(inputs, outputs, name="my_classifier").save(tmp_path / "clf.keras")
    # Another input size: weights do not depend on it.
    _assert_same_weights(build_backbone("resnet18", 64, weights=str(tmp_path / "clf.keras")), backbone)


def test_legacy_h5_files(tmp_path):
    h5py = pytest.importorskip("h5py")
    from keras.src.legacy.saving import legacy_h5_format  # writes the layout of Keras's *_notop.h5 files

    backbone = _randomised(build_backbone("resnet20", 32), seed=4)
    backbone.save(tmp_path / "whole.h5")
    with h5py.File(tmp_path / "weights_only.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    for name in ("whole.h5", "weights_only.h5"):
        _assert_same_weights(build_backbone("resnet20", 32, weights=str(tmp_path / name)), backbone)


def test_wrong_architecture_names_file_and_backbone(tmp_path):
    build_backbone("resnet20", 32).save_weights(tmp_path / "r20.weights.h5")
    with pytest.raises(UserError, match=r"model.weights: could not load '.*r20\.weights\.h5' into backbone 'resnet18'"):
        build_backbone("resnet18", 32, weights=str(tmp_path / "r20.weights.h5"))

    keras.Sequential([keras.Input((32, 32, 3)), build_backbone("resnet20", 32)]).save(tmp_path / "r20.keras")
    with pytest.raises(UserError, match=r"'.*r20\.keras' holds backbone 'resnet20', not backbone 'resnet32'"):
        build_backbone("resnet32", 32, weights=str(tmp_path / "r20.keras"))


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(UserError, match=f"model.weights: no such file: '{re.escape(str(missing))}'"):
        build_backbone("resnet20", 32, weights=str(missing))


# ---------------------------------------------------------------- imagenet
def test_imagenet_refused_where_keras_has_none():
    expected = (
        "model.weights: received 'imagenet' for backbone 'resnet18'; allowed: none or a weights file "
        "(Keras ships ImageNet weights only for resnet50, resnet101, resnet152, resnet50v2, resnet101v2, resnet152v2)"
    )
    with pytest.raises(UserError) as info:
        build_backbone("resnet18", 64, weights="imagenet")
    assert str(info.value) == expected


@pytest.fixture
def keras_download(monkeypatch, tmp_path):
    """Keras's real get_file, with an empty cache and a stand-in for urlretrieve."""
    from keras.src.utils import file_utils  # what keras.applications calls

    real_get_file = file_utils.get_file
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **kw: real_get_file(*a, **{**kw, "cache_dir": str(tmp_path)}))
    monkeypatch.delenv("KERAS_HOME", raising=False)

    def use(urlretrieve):
        monkeypatch.setattr(file_utils, "urlretrieve", urlretrieve)

    return use


def test_imagenet_offline_gives_one_clear_error(keras_download):
    # What urlretrieve raises on this machine without a network (DNS failure);
    # get_file turns it into a bare Exception("URL fetch failure on ...").
    def offline(url, *args):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    keras_download(offline)
    with pytest.raises(UserError) as info:
        build_backbone("resnet50", 64, weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model.weights: could not download the ImageNet weights for 'resnet50' (URL fetch failure")
    assert "--set model.weights=PATH" in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 into ~/.keras/models" in message


def test_imagenet_download_with_wrong_hash_is_refused(keras_download):
    def corrupted(url, target, *args):
        Path(target).write_bytes(b"not the weights")

    keras_download(corrupted)
    with pytest.raises(UserError, match="could not download the ImageNet weights for 'resnet50v2'.*hash"):
        build_backbone("resnet50v2", 64, weights="imagenet")


def test_imagenet_other_errors_are_not_disguised(keras_download):
    def broken(url, *args):
        raise RuntimeError("a bug, not the network")

    keras_download(broken)
    with pytest.raises(RuntimeError, match="a bug"):
        build_backbone("resnet50", 64, weights="imagenet")


# ------------------------------------------------------- imports, backends
def test_importing_the_package_does_not_import_keras():
    code = "import sys, resnet_tl, resnet_tl.errors; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_no_tensorflow_in_backbones():
    for module in (backbones, resnets):
        source = Path(module.__file__).read_text()
        assert not re.search(r"\btf\.|import tensorflow|from tensorflow", source), module.__name__


@pytest.mark.slow
def test_builds_under_the_other_backend():
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    pytest.importorskip(other)
    code = (
        "import keras, numpy as np\n"
        "from resnet_tl.models.backbones import BACKBONES, stage_of\n"
        "from resnet_tl.models.resnets import build_backbone\n"
        f"assert keras.backend.backend() == '{other}'\n"
        # Our own families; keras.applications is Keras's to test (and slow to build under JAX).
        "for name, size, side in [('resnet18', 64, 2), ('resnet8', 32, 8)]:\n"
        "    spec = BACKBONES[name]\n"
        "    model = build_backbone(name, size)\n"
        "    assert {stage_of(l.name, spec) for l in model.layers} == set(spec.stages)\n"
        "    out = keras.ops.convert_to_numpy(model(np.zeros((1, size, size, 3), 'float32')))\n"
        "    assert out.shape == (1, side, side, spec.feature_channels), out.shape\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": other}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=300)
