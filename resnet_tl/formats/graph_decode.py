"""Image bytes -> uint8 (S, S, 3) inside a TensorFlow graph, following `resnet_tl.data.decode`.

The SavedModel's ``serving_bytes`` signature runs this, so a server that
posts the raw upload gets what training saw:

- EXIF orientation (tag 0x0112 in a JPEG's APP1 "Exif" segment) is applied;
- alpha is composited on white (RGBA and grey+alpha PNG/WebP);
- grey becomes RGB; animated files use their first frame;
- the whole image is resized to S x S, bilinear with antialiasing, or, for a
  run trained with ``data.resize: bilinear``, as `resnet_tl.data.decode.bilinear_resize`
  (OpenCV's warpPerspective: corners onto corners, no antialiasing).

Where the graph cannot match Pillow exactly: Pillow decodes large JPEGs at a
reduced DCT scale (`draft`) and shrinks in two steps (`reducing_gap`), so
pixels differ by a few levels; EXIF orientation stored in PNG/WebP chunks
(rare) is not read; a GIF's transparent colour is not composited. README and
BENCHMARKS.md give the measured top-1 agreement with `resnet-tl predict`.
"""

from __future__ import annotations

_ORIENTATION_TAG = 0x0112


def decode_image_bytes(tf, data, size: int, resize: str = "antialias"):
    """A scalar string tensor of JPEG/PNG/GIF/BMP/WebP bytes -> uint8 (size, size, 3); resize: data.resize."""
    img = tf.io.decode_image(data, channels=0, expand_animations=False)  # native channels: 1, 2, 3 or 4
    img = tf.cast(img, tf.float32)
    img = _on_white(tf, img)
    img = _orient(tf, img, exif_orientation(tf, data))
    if resize == "bilinear":
        img = _corner_bilinear(tf, img, size)
    else:
        img = tf.image.resize(img, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)


def _corner_bilinear(tf, img, size: int):
    """float (H, W, 3) -> (size, size, 3): output pixel x samples source x * W / size, neighbours
    clamped to the edge; what `resnet_tl.data.decode.bilinear_resize` computes (tf.image.resize's
    bilinear samples half-pixel centres instead, a shift of up to half a source pixel per output pixel)."""
    def axis(n):
        pos = tf.cast(tf.range(size), tf.float64) * (tf.cast(n, tf.float64) / size)
        lo = tf.floor(pos)
        frac = tf.cast(pos - lo, tf.float32)
        lo = tf.cast(lo, tf.int32)
        return tf.clip_by_value(lo, 0, n - 1), tf.clip_by_value(lo + 1, 0, n - 1), frac

    y0, y1, fy = axis(tf.shape(img)[0])
    x0, x1, fx = axis(tf.shape(img)[1])
    rows0, rows1 = tf.gather(img, y0), tf.gather(img, y1)

    def cols(rows):
        return tf.gather(rows, x0, axis=1) * (1 - fx)[None, :, None] + tf.gather(rows, x1, axis=1) * fx[None, :, None]

    return cols(rows0) * (1 - fy)[:, None, None] + cols(rows1) * fy[:, None, None]


def _on_white(tf, img):
    """float (H, W, C) with C in 1..4 -> float RGB (H, W, 3), alpha composited on white."""
    c = tf.shape(img)[-1]
    colour = tf.cond(c >= 3, lambda: img[..., :3], lambda: tf.repeat(img[..., :1], 3, axis=-1))
    alpha = tf.cond(tf.equal(c % 2, 0), lambda: img[..., -1:] / 255.0, lambda: tf.ones_like(img[..., :1]))
    return colour * alpha + 255.0 * (1.0 - alpha)


def _orient(tf, img, orientation):
    """Apply EXIF orientation 1..8 the way Pillow's `ImageOps.exif_transpose` does."""
    t = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: img,                                # 1 (and anything unknown)
        lambda: img,                                # 1
        lambda: tf.reverse(img, [1]),               # 2 mirror left-right
        lambda: tf.image.rot90(img, 2),             # 3 rotate 180
        lambda: tf.reverse(img, [0]),               # 4 mirror top-bottom
        lambda: t(img),                             # 5 transpose
        lambda: tf.image.rot90(img, 3),             # 6 rotate 90 clockwise
        lambda: tf.image.rot90(t(img), 2),          # 7 transverse
        lambda: tf.image.rot90(img, 1),             # 8 rotate 90 counter-clockwise
    ]
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation, 0)
    return tf.switch_case(tf.cast(index, tf.int32), branches)


def exif_orientation(tf, data):
    """int32 scalar: the EXIF orientation of a JPEG's APP1 segment, 1 where there is none or it is unreadable."""
    parts = tf.strings.split(tf.reshape(data, [1]), sep="Exif\x00\x00", maxsplit=1).values
    jpeg = tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8")
    found = jpeg & (tf.size(parts) == 2)
    tiff = tf.cond(found, lambda: parts[-1], lambda: tf.constant(b""))
    return tf.cond(found & (tf.strings.length(tiff) >= 8), lambda: _orientation_in_tiff(tf, tiff), lambda: tf.constant(1))


def _orientation_in_tiff(tf, tiff):
    """Read IFD0 of a TIFF header (byte order "II" or "MM") for tag 0x0112; 1 if absent."""
    n = tf.strings.length(tiff)
    little = tf.equal(tf.strings.substr(tiff, 0, 2), b"II")

    def uint(pos, width):  # unsigned int of `width` bytes at `pos`, in the TIFF's byte order
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(tiff, pos, width), tf.uint8), tf.int64)
        b = tf.cond(little, lambda: tf.reverse(b, [0]), lambda: b)
        return tf.reduce_sum(b * tf.constant([256 ** 3, 256 ** 2, 256, 1], tf.int64)[4 - width:])

    ifd = tf.cast(uint(4, 4), tf.int32)
    ok = (ifd >= 8) & (ifd + 2 <= n)

    def scan():
        count = tf.cast(uint(ifd, 2), tf.int32)
        count = tf.minimum(count, (n - ifd - 2) // 12)  # a truncated directory reads what is there
        raw = tf.io.decode_raw(tf.strings.substr(tiff, ifd + 2, 12 * count), tf.uint8)
        entries = tf.cast(tf.reshape(raw, [-1, 12]), tf.int32)

        def field(lo, hi):  # big-endian value of bytes lo..hi-1 of every entry, honouring byte order
            cols = entries[:, lo:hi]
            cols = tf.cond(little, lambda: tf.reverse(cols, [1]), lambda: cols)
            weights = tf.constant([256 ** i for i in range(hi - lo)][::-1], tf.int32)
            return tf.reduce_sum(cols * weights, axis=1)

        tags, values = field(0, 2), field(8, 10)  # SHORT value: first 2 bytes of the value field
        hit = tf.where(tf.equal(tags, _ORIENTATION_TAG))[:, 0]
        return tf.cond(tf.size(hit) > 0, lambda: tf.gather(values, hit[0]), lambda: tf.constant(1))

    return tf.cond(ok, scan, lambda: tf.constant(1))
