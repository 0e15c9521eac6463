"""The PyDataset training, validation and bench read: `ArrayBatches` (numpy, resnet_tl.data)
wrapped for `fit`, with one-hot labels and the next batches built ahead on loader threads."""

from __future__ import annotations

import numpy as np

from resnet_tl.data.batches import ArrayBatches
from resnet_tl.data.prefetch import Prefetched
from resnet_tl.kerasenv import keras_module

keras = keras_module()


def as_keras_dataset(batches: ArrayBatches, workers: int = 1, use_multiprocessing: bool = False,
                     max_queue_size: int = 10, *, num_classes: int | None = None, follow_epochs: bool = True,
                     prefetch: bool = False):
    """Wrap `batches` in a keras.utils.PyDataset.

    num_classes: turn integer labels into one-hot float32 (B, num_classes), so
    label smoothing, mixup and cutmix share one loss. follow_epochs: take the
    next order at each epoch begin (fit() may begin one extra epoch to build
    the model; the orders stay deterministic); off when the caller sets the
    epoch itself (`set_epoch`) and fits one epoch per call. prefetch: build
    the next batches on loader threads while the caller works (data.prefetch).
    """
    start = batches.epoch
    eye = np.eye(num_classes, dtype=np.float32) if num_classes else None
    source = Prefetched(batches) if prefetch else batches

    class _Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
            self.batches = batches
            self._begins = self._ends = 0

        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            item = source[i]
            if eye is not None and item[1].ndim == 1:
                item = (item[0], eye[item[1]], *item[2:])
            return item

        def set_epoch(self, epoch: int) -> None:
            source.set_epoch(epoch)

        # Keras also calls on_epoch_end when it resets an iterator, so counting
        # epoch ends would skip orders; epoch begins are exact where Keras has them.
        def on_epoch_begin(self):
            if not follow_epochs:
                return
            self._begins += 1
            source.set_epoch(start + self._begins - 1)

        def on_epoch_end(self):
            if follow_epochs and self._begins == 0:  # a Keras without on_epoch_begin
                self._ends += 1
                source.set_epoch(start + self._ends)

    return _Batches()


def keras_batches(x, y, num_classes: int, batch_size: int, seed: int, shuffle: bool,
                  class_weight=None, mix: dict | None = None, setup=None):
    """The PyDataset training and validation read: (pixels or features, one-hot labels[, sample weights]).

    x: (N, ...) uint8 pixels (a memmap is fine) or float32 features; y: (N,) int.
    Pixels stay uint8 unless mixup blends them: Keras casts them to the
    model's float32 input on the device, and a quarter of the bytes crosses
    to it. The next batches are built ahead on loader threads (data.prefetch).
    mix: {"mixup": alpha, "cutmix": alpha}. With a distributed `setup`, this
    process reads its own shard, in steps of its part of the global
    `batch_size`; training drops a last partial batch so that every step
    splits evenly across devices. Call `set_epoch(e)` before each epoch.
    """
    mix = mix or {}
    shard = {}
    if setup is not None and setup.num_replicas > 1:
        shard = dict(batch_size=setup.process_batch_size(batch_size), shard_index=setup.process_id,
                     num_shards=setup.num_processes, drop_remainder=shuffle)
    batches = ArrayBatches(
        x, y, **{"batch_size": batch_size, **shard}, shuffle=shuffle, seed=seed, class_weight=class_weight,
        mixup=mix.get("mixup", 0.0), cutmix=mix.get("cutmix", 0.0), num_classes=num_classes,
        dtype="uint8" if x.dtype == np.uint8 and not mix.get("mixup", 0.0) else "float32",
    )
    return as_keras_dataset(batches, num_classes=num_classes, follow_epochs=False, prefetch=True)
