"""The SavedModel format: TensorFlow Serving's folder, with a pixels and an image-bytes signature."""

from __future__ import annotations

from pathlib import Path

from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_dir
from resnet_tl.formats.context import WriteContext, quiet, static_io, tensorflow
from resnet_tl.formats.graph_decode import decode_image_bytes
from resnet_tl.kerasenv import keras_module


def write(ctx: WriteContext, dest: Path, quantize: str) -> None:
    """serving_default: images uint8 (B, S, S, 3) -> probabilities; serving_bytes: encoded images
    (B,) -> probabilities, decoded inside the graph as training decodes (resnet_tl.formats.graph_decode)."""
    tf, keras, model, s = tensorflow(), keras_module(), ctx.float_model, ctx.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.uint8, name="images")])
    def serve(images):
        return {"probabilities": model(tf.cast(images, tf.float32), training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        # As training decodes: EXIF orientation, alpha on white, whole image squashed to s x s by data.resize.
        images = tf.map_fn(lambda data: decode_image_bytes(tf, data, s, ctx.resize), image_bytes,
                           fn_output_signature=tf.TensorSpec([s, s, 3], tf.uint8))
        return {"probabilities": model(tf.cast(images, tf.float32), training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve)
    archive.add_endpoint("serving_bytes", serve_bytes)
    with atomic_dir(dest) as tmp:
        with quiet():
            archive.write_out(str(tmp), verbose=False)


def load(path: Path, num_threads: int | None):
    """(uint8 (B, S, S, 3) -> float32 probabilities (B, C), S) through the serving_default signature."""
    tf = tensorflow()
    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        raise UserError(f"SavedModel '{path}': no 'serving_default' signature; found {sorted(loaded.signatures)}")
    fn = loaded.signatures["serving_default"]
    spec = fn.structured_input_signature[1]
    in_name, in_spec = next(iter(spec.items()))
    out_name = "probabilities" if "probabilities" in fn.structured_outputs else next(iter(fn.structured_outputs))

    def run(x):
        return fn(**{in_name: tf.constant(x.astype(in_spec.dtype.as_numpy_dtype))})[out_name].numpy()

    run.loaded = loaded  # keep the object (and its variables) alive
    return run, int(in_spec.shape[1])


def io_details(path: Path) -> dict:
    return static_io("images", "uint8")
