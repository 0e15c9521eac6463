"""Perceptual hashes of decoded images, and all close pairs among them: numpy and Pillow only.

Two 64-bit hashes per image, both on the grey image, both unchanged by resizing and mild
re-encoding (they see only coarse structure):

- dHash (difference hash): the grey image at 9 x 8 px; bit = pixel brighter than its left neighbour.
- pHash (DCT hash, as the imagehash package defines it): the grey image at 32 x 32 px, its 2-D
  DCT-II (unnormalised, as scipy's default), the 8 x 8 lowest frequencies; bit = coefficient above
  their median.

Bit k of a hash is row-major position k of the 8 x 8 bit grid.

Both are blind to colour (two shapes alike but for their colours hash alike), so a copy must also
match a colour thumbnail: the RGB image at 4 x 4 px, compared by mean absolute difference.

Two images are copies when both hashes differ in few bits (the Hamming distance) and their
thumbnails by little.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_BITS = 1 << np.arange(64, dtype=np.uint64)
_POPCOUNT8 = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


def _grey(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 grey (h, w), resized with Pillow's antialiasing (size = (w, h))."""
    grey = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("L")
    return np.asarray(grey.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)


def _pack(bits: np.ndarray) -> np.uint64:
    return np.uint64(np.sum(_BITS[: bits.size][bits.ravel()], dtype=np.uint64))


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II matrix (n, n): y = D @ x, y_k = 2 sum_i x_i cos(pi k (2i + 1) / 2n)."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return (2.0 * np.cos(np.pi * (2 * i + 1) * k / (2 * n))).astype(np.float64)


_DCT32 = _dct_matrix(32)


def dhash(pixels: np.ndarray) -> np.uint64:
    """64-bit difference hash of one uint8 RGB image (H, W, 3)."""
    g = _grey(pixels, (9, 8))
    return _pack(g[:, 1:] > g[:, :-1])


def phash(pixels: np.ndarray) -> np.uint64:
    """64-bit DCT hash of one uint8 RGB image (H, W, 3)."""
    g = _grey(pixels, (32, 32)).astype(np.float64)
    low = (_DCT32 @ g @ _DCT32.T)[:8, :8]
    return _pack(low > np.median(low))


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """The uint8 RGB image (H, W, 3) at 4 x 4 px, flattened (48,) uint8."""
    img = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).resize((4, 4), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8).ravel()


def hashes(images) -> np.ndarray:
    """(N, 8) uint64 per uint8 image (N, H, W, 3): [dHash, pHash, the 48-byte thumbnail as 6 words]."""
    out = np.zeros((len(images), 8), dtype=np.uint64)
    for i, img in enumerate(images):
        out[i, :2] = dhash(img), phash(img)
        out[i, 2:] = thumbnail(img).view(np.uint64)
    return out


def colour_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference (0..255) of the thumbnails of hash rows a (..., 8) and b (..., 8)."""
    ta = np.ascontiguousarray(a[..., 2:]).view(np.uint8).astype(np.int16)
    tb = np.ascontiguousarray(b[..., 2:]).view(np.uint8).astype(np.int16)
    return np.abs(ta - tb).mean(axis=-1)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64, as uint8 (numpy < 2 has no bitwise_count)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    return _POPCOUNT8[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def close_pairs(h: np.ndarray, max_bits: tuple[int, int], max_colour: float,
                block: int = 2048) -> list[tuple[int, int, int, int, float]]:
    """Pairs (i, j, dhash distance, phash distance, colour difference), i < j, within all three bounds.

    h: (N, 8) uint64 from `hashes`. dHash distances of every pair, `block` rows at a time (memory
    ~ block x N bytes); the pHash and the thumbnail only for the pairs whose dHash is close.
    """
    count = getattr(np, "bitwise_count", popcount)  # numpy >= 2 counts bits natively, 10x faster
    pairs = []
    for start in range(0, len(h), block):
        rows = h[start:start + block]
        dd = count(rows[:, None, 0] ^ h[None, start:, 0])
        ii, jj = np.nonzero(dd <= max_bits[0])
        keep = jj > ii  # columns start at `start`: j > i within the block's own square, all later rows beyond
        ii, jj = ii[keep], jj[keep] + start
        dp = count(rows[ii, 1] ^ h[jj, 1])
        near = dp <= max_bits[1]
        ii, jj, dp = ii[near], jj[near], dp[near]
        colour = colour_difference(rows[ii], h[jj])
        for a, b, p, c in zip(ii, jj, dp, colour):
            if c <= max_colour:
                pairs.append((int(a + start), int(b), int(dd[a, b - start]), int(p), float(c)))
    return pairs
