"""data.resize: bilinear shrinks images as MediaPipe (OpenCV's warpPerspective) does, everywhere the model sees pixels."""

from __future__ import annotations

import shutil

import cv2  # MediaPipe's own dependency: the resize an app's pipeline runs
import numpy as np
import pytest
from PIL import Image

from resnet_tl.data import decode_image, load_dataset
from resnet_tl.data.decode import bilinear_resize
from resnet_tl.recipe import DataConfig


def _mediapipe_resize(img: np.ndarray, s: int) -> np.ndarray:
    """MediaPipe's whole-image preprocessing (image_to_tensor_converter_opencv.cc): the image's corners
    mapped onto the output's by getPerspectiveTransform, then warpPerspective, bilinear, border replicated."""
    h, w = img.shape[:2]
    src = np.float32([[0, h], [0, 0], [w, 0], [w, h]])
    dst = np.float32([[0, s], [0, 0], [s, 0], [s, s]])
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("h,w,s", [(375, 500, 128), (300, 300, 64), (100, 77, 32), (16, 16, 40)])
def test_bilinear_resize_is_opencvs_warp(h, w, s):
    rng = np.random.default_rng(h)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)
    diff = np.abs(bilinear_resize(img, s).astype(int) - _mediapipe_resize(img, s).astype(int))
    assert diff.max() <= 1, diff.max()  # OpenCV interpolates in fixed point (1/32 px weights)


def _stripes(path, w=256, h=192):
    """Fine stripes (period 3 px): an antialiased shrink to 32 px averages them away, a bilinear one aliases."""
    x = np.arange(w)
    img = np.repeat(np.where(x % 3 == 0, 230, 20).astype(np.uint8)[None, :, None], h, 0).repeat(3, 2)
    Image.fromarray(img).save(path)
    return img


def test_data_resize_bilinear_is_used_by_the_loader_and_cached_apart(tmp_path):
    root = tmp_path / "data"
    full = {}
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            full[f"{cls}/{i}.png"] = _stripes(root / cls / f"{i}.png", w=256 + i)
    cache = tmp_path / "cache"
    anti = load_dataset(DataConfig(dir=str(root), image_size=32, cache_dir=str(cache), val_split=0.34))
    bili = load_dataset(DataConfig(dir=str(root), image_size=32, cache_dir=str(cache), val_split=0.34, resize="bilinear"))
    for ds, x in ((bili, bili.x_train), (anti, anti.x_train)):
        rel = [str(p.relative_to(root).as_posix()) for p in ds.paths_train]
        expected = [bilinear_resize(full[r], 32) for r in rel] if ds is bili else [decode_image(root / r, 32) for r in rel]
        np.testing.assert_array_equal(np.asarray(x), np.stack(expected))
    # The two resizes really differ on fine detail (else this test proves nothing), and each has its own rows.
    assert np.abs(np.asarray(anti.x_train, float) - np.asarray(bili.x_train, float)).mean() > 20
    assert {p.name for p in next(cache.glob("datasets/*")).iterdir() if p.is_dir()} >= {"32px", "32px-bilinear"}


def test_a_model_file_reports_the_resize_its_run_trained_with(shared_run, tmp_path):
    import yaml

    from resnet_tl.formats.predictor import load_predictor

    run = tmp_path / "run"
    shutil.copytree(shared_run, run)
    assert load_predictor(run / "model.keras").resize == "antialias"
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["data"]["resize"] = "bilinear"
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert load_predictor(run / "model.keras").resize == "bilinear"


def test_the_savedmodel_bytes_signature_resizes_a_bilinear_run_the_same_way(tmp_path):
    from resnet_tl.data.decode import decode_bytes
    from resnet_tl.formats.context import tensorflow
    from resnet_tl.formats.graph_decode import decode_image_bytes

    tf = tensorflow()
    img = _stripes(tmp_path / "s.png", w=301, h=203)
    data = (tmp_path / "s.png").read_bytes()
    graph = decode_image_bytes(tf, tf.constant(data), 40, "bilinear").numpy()
    np.testing.assert_allclose(graph, _mediapipe_resize(img, 40), atol=1)
    np.testing.assert_allclose(graph, decode_bytes(data, 40, resize="bilinear"), atol=1)
