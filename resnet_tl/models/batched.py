"""The one inference path: a Keras model over many images, batch by batch, on the device.

    probs = predict_probs(classifier, x_val, batch_size=64)   # uint8 (N, S, S, 3) -> float32 (N, C)

evaluate, predict (the .keras format's runner), export's reference and parity
check, bench and the end of training all run Keras models through `run_batches`
(tests/core/test_structure.py checks that nothing else calls a model's predict).
What it does, and why:

- uint8 pixels go to the device, a quarter of float32's bytes; the cast and the
  backbone's normalisation (the classifier's `preprocess` layer) run there, in
  the compiled function.
- one compiled function per model (kept while the model lives) and one input
  shape: smaller batches are padded to the largest seen, so nothing is traced twice.
- no host synchronisation per batch: batch i's outputs are copied back only
  after batch i+1 is dispatched, so the device computes while the host reads
  (a memmap), pads and sends the next batch. Under JAX, dispatch and
  `device_put` are asynchronous, which is what overlaps the copy with compute.
  Under TensorFlow the compiled function is Keras's own predict function.
- the batch is sized to the device (`device_batch_size`).
"""

from __future__ import annotations

import weakref

import numpy as np

from resnet_tl.kerasenv import keras_module

keras = keras_module()

# Below this many images per call an accelerator idles between kernel launches
# (ResNet-50 at 224 px: a call of 32 is launch-bound on an H100-class GPU, 256 is not).
ACCELERATOR_MIN_BATCH = 256
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def on_accelerator() -> bool:
    """True when the backend's default device is a GPU or TPU."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.devices()[0].platform != "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    return False


def device_batch_size(requested: int, accelerator: bool | None = None) -> int:
    """Images per device call: `requested` on CPUs (more only adds memory), at
    least ACCELERATOR_MIN_BATCH on a GPU or TPU."""
    if accelerator is None:
        accelerator = on_accelerator()
    return max(requested, ACCELERATOR_MIN_BATCH) if accelerator else requested


def compiled_forward(model):
    """The model's compiled inference function: host batch (B, ...) any dtype -> device array (B, ...)."""
    fn = _COMPILED.get(model)
    if fn is None:
        fn = _COMPILED[model] = _make_forward(model)
    return fn


def _make_forward(model):
    # The function holds the model weakly: _COMPILED's value must not keep its own key alive.
    ref = weakref.ref(model)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        in_dtype = model.inputs[0].dtype if getattr(model, "inputs", None) else "float32"

        @jax.jit
        def forward(trainable, non_trainable, x):
            # the uint8 -> float cast happens here, on the device
            y, _ = ref().stateless_call(trainable, non_trainable, keras.ops.cast(x, in_dtype), training=False)
            return y

        def run(xb):
            m = ref()
            # Committing the batch to the default device would clash with weights a
            # distribution spread over several; then jit places it beside them.
            x = jax.device_put(xb) if keras.distribution.distribution() is None else xb
            return forward([v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables], x)

        return run
    if backend == "tensorflow":
        # Keras's own tf.function (XLA when the model's jit_compile says so); its outputs
        # stay tensors on the device until `to_numpy`.
        model.make_predict_function()
        return lambda xb: ref().predict_function([(xb,)])
    return lambda xb: ref().predict_on_batch(xb)


def host_batches(x, batch_size: int):
    """Consecutive batches of `x` (a uint8 memmap or any array), read as they are needed, dtype kept."""
    for i in range(0, len(x), batch_size):
        yield np.asarray(x[i:i + batch_size])


def run_batches(model, x, batch_size: int, transform=None, pad_to: int = 0) -> np.ndarray:
    """Model outputs (N, ...) float32 for inputs `x` (N, ...), uint8 or float, `batch_size` at a time.

    transform: applied to each host batch first (e.g. augmentation; it gets float32).
    pad_to: pad every batch to at least this many images (a runner's largest batch so far).
    """
    pad_to = max(pad_to, batch_size if len(x) > batch_size else 0)
    out, pending = [], None
    for xb in host_batches(x, batch_size):
        if transform is not None:
            xb = transform(xb.astype(np.float32))
        started = dispatch(model, xb, pad_to)  # the device runs it while we copy the last one back
        if pending is not None:
            out.append(to_numpy(*pending))
        pending = started
    if pending is not None:
        out.append(to_numpy(*pending))
    if out:
        return np.concatenate(out)
    return np.zeros((0, *model.output_shape[1:]), "float32")


def dispatch(model, xb: np.ndarray, pad_to: int = 0) -> tuple[object, int]:
    """Start the model on one host batch (padded to `pad_to` images); (device outputs, rows that count)."""
    n = len(xb)
    if n < pad_to:
        xb = np.concatenate([xb, np.zeros((pad_to - n, *xb.shape[1:]), xb.dtype)])
    return compiled_forward(model)(xb), n


def to_numpy(y, n: int) -> np.ndarray:
    """The first n rows of a device array, as float32 on the host (waits for it)."""
    return np.asarray(keras.ops.convert_to_numpy(y), dtype="float32")[:n]


def predict_batched(model, x, batch_size: int, transform=None) -> np.ndarray:
    """`run_batches` with the batch sized to the device."""
    return run_batches(model, x, device_batch_size(batch_size), transform)


def predict_probs(model, x, batch_size: int) -> np.ndarray:
    """Class probabilities (N, classes) float32 for uint8 or float pixels (N, S, S, 3)."""
    return predict_batched(model, x, batch_size)
