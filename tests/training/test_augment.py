"""The keras.ops augmenter against references we did not write: Keras's own preprocessing
layers (TensorFlow's ImageProjectiveTransform kernel), scipy.ndimage and PIL, on fixed parameters."""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from scipy import ndimage

from resnet_tl.recipe import build_recipe
from resnet_tl.training import augment_policy
from resnet_tl.training.augment import build_augmenter, is_identity

H, W = 12, 16  # not square: a swapped axis shows


def augmenter(**augment):
    cfg = build_recipe({"data": {"augment": {"flip": "none", **augment}}}).data.augment
    return build_augmenter(cfg, W, seed=3)


def images(n=2, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, H, W, 3)).astype("float32")


def params(**p) -> dict:
    return {k: np.asarray(v, dtype="int32" if k == "policy_ops" else "float32") for k, v in p.items()}


def apply(aug, x, **p) -> np.ndarray:
    return keras.ops.convert_to_numpy(aug.transform(x, params(**p)))


def scipy_warp(x: np.ndarray, m_rc: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Bilinear, reflect fill: input (row, col) = m_rc @ output (row, col) + offset."""
    return np.stack([ndimage.affine_transform(x[..., ch], m_rc, offset, order=1, mode="reflect") for ch in range(3)], -1)


def about_center_rc(m_rc: np.ndarray, shift_rc=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    c = np.array([(H - 1) / 2, (W - 1) / 2])
    return m_rc, c + np.asarray(shift_rc) - m_rc @ c


# ------------------------------------------------------------------ geometry
@pytest.mark.parametrize("turns", [0.05, -0.13, 0.5])
def test_rotation_equals_keras_random_rotation(turns):
    x = images()
    ref = keras.layers.RandomRotation((turns, turns), fill_mode="reflect", interpolation="bilinear")(x, training=True)
    ours = apply(augmenter(rotation=0.5), x, angle=[turns * 2 * math.pi] * 2)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(ref), atol=1e-2)


@pytest.mark.parametrize("scale", [0.8, 1.25])
def test_zoom_equals_keras_random_zoom(scale):
    x = images()
    ref = keras.layers.RandomZoom((scale - 1, scale - 1), fill_mode="reflect", interpolation="bilinear")(x, training=True)
    ours = apply(augmenter(zoom=0.5), x, zoom=[scale] * 2)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(ref), atol=1e-2)


def test_flips_are_exact_reversals_with_and_without_resampling():
    x = images()
    flips = {"flip_h": [1, 0], "flip_v": [1, 1]}
    want = np.stack([x[0, ::-1, ::-1], x[1, ::-1]])
    np.testing.assert_array_equal(apply(augmenter(flip="both"), x, **flips), want)
    # With a rotation of 0 the flip is folded into the resampling matrix: still exact.
    np.testing.assert_allclose(apply(augmenter(flip="both", rotation=0.1), x, **flips, angle=[0, 0]), want, atol=1e-4)


def test_crop_is_a_square_inside_the_image_resized_back_as_scipy_does():
    x = images(1)
    s, u, v = 0.6, 1.0, -0.5  # side fraction; shift: all the room right, half of it up
    room = (1 - s) * np.array([(H - 1) / 2, (W - 1) / 2])
    m, off = about_center_rc(np.diag([s, s]), room * [v, u])
    ours = apply(augmenter(crop=0.3), x, crop_scale=[s], crop_x=[u], crop_y=[v])
    np.testing.assert_allclose(ours[0], scipy_warp(x[0], m, off), atol=1e-2)
    # All the room to the right: the crop's last column is the image's last column.
    np.testing.assert_allclose(ours[0, :, -1], scipy_warp(x[0], m, off)[:, -1], atol=1e-2)


def test_flip_rotation_zoom_crop_compose_into_one_resampling_as_scipy_does():
    x = images(1)
    angle, zoom, s, u, v = 0.3, 0.9, 0.8, -0.4, 0.7
    ours = apply(augmenter(flip="horizontal", rotation=0.1, zoom=0.2, crop=0.5), x,
                 flip_h=[1], angle=[angle], zoom=[zoom], crop_scale=[s], crop_x=[u], crop_y=[v])
    # In (row, col): flip mirrors col; rotation by angle (x right, y down) is [[cos, sin], [-sin, cos]].
    c = np.array([(H - 1) / 2, (W - 1) / 2])
    cos, sin = math.cos(angle), math.sin(angle)
    flip = (np.diag([1.0, -1.0]), np.array([0.0, W - 1]))
    rot = about_center_rc(np.array([[cos, sin], [-sin, cos]]))
    zm = about_center_rc(np.diag([zoom, zoom]))
    crop = about_center_rc(np.diag([s, s]), (1 - s) * c * [v, u])
    m, off = np.eye(2), np.zeros(2)
    for fm, fo in (flip, rot, zm, crop):  # input = flip(rot(zoom(crop(output))))
        m, off = m @ fm, m @ fo + off
    np.testing.assert_allclose(ours[0], scipy_warp(x[0], m, off), atol=1e-2)


# -------------------------------------------------------------------- colour
def test_contrast_and_brightness_equal_keras_layers():
    x = images()
    k = np.array([0.7, 1.3], dtype="float32").reshape(-1, 1, 1, 1)
    ref = keras.layers.RandomContrast(0.5, value_range=(0, 255)).transform_images(x, {"contrast_factor": k})
    np.testing.assert_allclose(apply(augmenter(contrast=0.5), x, contrast=k.ravel()), keras.ops.convert_to_numpy(ref), atol=1e-3)
    d = np.array([-40.0, 25.5], dtype="float32").reshape(-1, 1, 1, 1)
    ref = keras.layers.RandomBrightness(0.5, value_range=(0, 255)).transform_images(x, {"rgb_delta": d})
    np.testing.assert_allclose(apply(augmenter(brightness=0.5), x, brightness=d.ravel()), keras.ops.convert_to_numpy(ref), atol=1e-3)


# -------------------------------------------------------------------- policy
def pil_op(name: str, img: Image.Image, level: float) -> Image.Image:
    factor = 1 + 0.9 * level
    return {
        "autocontrast": lambda: ImageOps.autocontrast(img),
        "brightness": lambda: ImageEnhance.Brightness(img).enhance(factor),
        "color": lambda: ImageEnhance.Color(img).enhance(factor),
        "contrast": lambda: ImageEnhance.Contrast(img).enhance(factor),
        "sharpness": lambda: ImageEnhance.Sharpness(img).enhance(factor),
        "posterize": lambda: ImageOps.posterize(img, 8 - round(4 * abs(level))),
        "solarize": lambda: ImageOps.solarize(img, round(256 * (1 - abs(level)))),
    }[name]()


@pytest.mark.parametrize("name", augment_policy.COLOR_OPS)
@pytest.mark.parametrize("level", [0.5, -0.9])
def test_policy_colour_ops_equal_pil_as_timm_uses_it(name, level):
    rng = np.random.default_rng(1)
    # Smooth images with a narrow range, so autocontrast and sharpness have work to do.
    x = np.clip(ndimage.gaussian_filter(rng.uniform(60, 200, (1, H, W, 3)), (0, 1, 1, 0)), 0, 255).round().astype("float32")
    ours = apply(augmenter(policy="randaugment", num_ops=1), x,
                 policy_ops=[[augment_policy.op_index(name)]], policy_levels=[[level]])
    want = np.asarray(pil_op(name, Image.fromarray(x[0].astype(np.uint8)), level), dtype="float32")
    # PIL works in uint8: its grey is rounded (+-0.5 x abs(1 - factor)) and its blends truncate (< 1).
    np.testing.assert_allclose(ours[0], want, atol=1.5)


@pytest.mark.parametrize("name, level, m_rc, shift_rc", [
    ("shear_x", 0.5, [[1, 0], [0.15, 1]], (0, 0)),  # x_in = x + 0.15 y
    ("translate_y", -1.0, [[1, 0], [0, 1]], (-0.45 * H, 0)),
])
def test_policy_geometric_ops_equal_scipy(name, level, m_rc, shift_rc):
    x = images(1)
    ours = apply(augmenter(policy="randaugment", num_ops=1), x,
                 policy_ops=[[augment_policy.op_index(name)]], policy_levels=[[level]])
    m, off = about_center_rc(np.array(m_rc, dtype=float), shift_rc)
    np.testing.assert_allclose(ours[0], scipy_warp(x[0], m, off), atol=1e-2)


@pytest.mark.parametrize("policy, magnitude, num_ops", [("randaugment", 5, 3), ("trivialaugment", 6, None)])
def test_policy_draws_ops_and_levels_within_its_stated_magnitude(policy, magnitude, num_ops):
    aug = augmenter(policy=policy, magnitude=magnitude, **({"num_ops": num_ops} if num_ops else {}))
    p = {k: keras.ops.convert_to_numpy(v) for k, v in aug.sample(4000).items()}
    ops, levels = p["policy_ops"], np.abs(p["policy_levels"])
    assert ops.shape == (4000, num_ops or 1)
    counts = np.bincount(ops.ravel(), minlength=len(augment_policy.OPS))
    assert counts.min() > 0.7 * ops.size / len(augment_policy.OPS)  # every op, about uniformly
    assert 0.45 < (p["policy_levels"] < 0).mean() < 0.55  # both directions
    if policy == "randaugment":
        np.testing.assert_allclose(levels, magnitude / 10, rtol=1e-6)
    else:  # uniform in [0, magnitude / 10]
        assert levels.max() <= magnitude / 10 + 1e-6 and abs(levels.mean() - magnitude / 20) < 0.01


def test_policy_changes_images_and_keeps_them_in_range():
    x = images(64)
    y = keras.ops.convert_to_numpy(augmenter(policy="randaugment", magnitude=9)(x, training=True))
    changed = np.abs(y - x).reshape(64, -1).max(axis=1) > 1
    assert changed.mean() > 0.8 and y.min() >= 0 and y.max() <= 255


# ------------------------------------------------------------------- erasing
def test_erasing_fills_one_rectangle_of_the_stated_size_with_the_stated_probability():
    aug = augmenter(erasing=0.4)
    p = {k: keras.ops.convert_to_numpy(v) for k, v in aug.sample(3000).items()}
    assert abs(p["erase"].mean() - 0.4) < 0.04
    n = 200
    p = {k: v[:n] for k, v in p.items()}
    p["erase"][:] = 1
    p["erase_color"][:] = 255
    out = apply(aug, np.zeros((n, 32, 32, 3), "float32"), **p)[..., 0] > 0
    areas = out.reshape(n, -1).mean(axis=1)
    assert areas.min() >= 0.02 * 0.5 and areas.max() <= 1 / 3 * 1.3  # pixel rounding of a continuous size
    for mask in out[:20]:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # one filled rectangle


# --------------------------------------------------------------------- layer
def test_identity_without_training_and_repeatable_from_its_seed():
    x = images()
    cfg = {"flip": "both", "rotation": 0.1, "contrast": 0.2, "policy": "trivialaugment", "erasing": 0.5}
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(augmenter(**cfg)(x, training=False)), x)
    a, b = augmenter(**cfg), augmenter(**cfg)
    first = keras.ops.convert_to_numpy(a(x, training=True))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(b(x, training=True)))
    assert not np.array_equal(first, keras.ops.convert_to_numpy(a(x, training=True)))  # the seed state moved on
    assert len(a.variables) == 1  # the seed state: what a checkpoint must carry


def test_is_identity_sees_every_key():
    assert is_identity(build_recipe({"data": {"augment": {"flip": "none"}}}).data.augment)
    for key, value in (("policy", "trivialaugment"), ("erasing", 0.1), ("crop", 0.5)):
        assert not is_identity(build_recipe({"data": {"augment": {"flip": "none", key: value}}}).data.augment), key


def test_every_option_trains_inside_xla():
    aug = augmenter(flip="both", rotation=0.1, zoom=0.1, crop=0.5, contrast=0.2, brightness=0.2,
                    policy="randaugment", erasing=0.5)
    inputs = keras.Input((H, W, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(aug(inputs))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Proceeding with jit_compile=False" is a UserWarning
        model.compile("sgd", "mse", jit_compile=True)
    assert model.jit_compile is True
    model.fit(images(4), np.zeros((4, 2)), batch_size=4, epochs=1, verbose=0)  # XLA conversion errors surface here
