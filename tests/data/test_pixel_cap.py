"""The decompression-bomb guard: a pixel cap read from the header, before any pixel is decoded."""

from __future__ import annotations

import numpy as np
import pytest
from images import bomb_png
from PIL import Image, ImageFile

from resnet_tl.data import scan_folder
from resnet_tl.data.decode import DEFAULT_MAX_PIXELS, PILLOW_MAX_PIXELS, DecodeError, decode_bytes, probe_header
from resnet_tl.recipe import DataConfig


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = bomb_png(13000, 13000)
    assert len(data) < 200_000  # ~160 KB on disk for 169 million pixels
    return data


def _never_load(monkeypatch):
    def refuse(self):
        raise AssertionError(f"pixels decoded: {self.size}")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_a_bomb_is_refused_from_its_header_before_decoding(bomb, monkeypatch):
    # Neither the header probe of a scan nor a decode allocates its pixels: before the guard,
    # decode_bytes ran load() (876 MB per decode thread), and so did probe_header, through
    # Pillow's PNG getexif(), which loads the image to look for a late eXIf chunk.
    _never_load(monkeypatch)
    assert probe_header(bomb)[:2] == (13000, 13000)
    with pytest.raises(DecodeError) as e:
        decode_bytes(bomb, 16)
    assert e.value.reason == "too_large" and "13000x13000" in e.value.detail


def test_the_default_cap_is_pillows_own_warning_level():
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS == DataConfig().max_pixels
    assert PILLOW_MAX_PIXELS == next(m.le for m in DataConfig.model_fields["max_pixels"].metadata if hasattr(m, "le"))
    big = bomb_png(200, 100)
    assert decode_bytes(big, 8, max_pixels=20_000).shape == (8, 8, 3)  # the cap itself is allowed
    with pytest.raises(DecodeError, match="too_large"):
        decode_bytes(big, 8, max_pixels=19_999)


def test_scan_skips_images_above_data_max_pixels_and_a_raised_cap_takes_them(tmp_path):
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i, size in enumerate((10, 10, 30)):
            Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")
    cfg = {"dir": str(root), "cache_dir": str(tmp_path / "cache"), "image_size": 8, "few_images_warning": 0}
    capped = scan_folder(root, DataConfig(**cfg, max_pixels=500))
    assert sorted((s.path.split("/")[-2:], s.reason) for s in capped.skipped) == [
        (["a", "2.png"], "too_large"), (["b", "2.png"], "too_large")]
    assert "30x30 px" in capped.skipped[0].detail and "data.max_pixels is 500" in capped.skipped[0].detail
    # The cap depends on the recipe, so the cache must not remember it: the same files, a larger cap.
    free = scan_folder(root, DataConfig(**cfg, max_pixels=900))
    assert free.skipped == [] and sum(len(v) for v in free.items.values()) == 6
