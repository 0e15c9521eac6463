"""Training batches from memmapped uint8 arrays, with numpy only.

`ArrayBatches` is indexable (batch i of the current epoch), so Keras can call
it from worker threads in any order; the order of epoch e depends only on
(seed, e). `resnet_tl.training.batches` wraps it in a `keras.utils.PyDataset`,
the form training, validation and bench read.
"""

from __future__ import annotations

import difflib
from typing import Iterator, Mapping

import numpy as np

from resnet_tl.errors import UserError


def class_weights(y: np.ndarray, classes: list[str], mode) -> dict[int, float] | None:
    """Class index -> loss weight for `train.class_weight` (none | balanced | {class_name: weight}).

    balanced = n / (k * count_c) like scikit-learn; a class absent from y gets 1.0.
    Classes not named in a mapping get 1.0.
    """
    if mode is None or mode == "none":
        return None
    k = len(classes)
    if mode == "balanced":
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=k)
        n = int(counts.sum())
        return {i: (n / (k * int(c)) if c else 1.0) for i, c in enumerate(counts)}
    if isinstance(mode, Mapping):
        out = {i: 1.0 for i in range(k)}
        index = {c: i for i, c in enumerate(classes)}
        for name, w in mode.items():
            if name not in index:
                close = difflib.get_close_matches(str(name), classes, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise UserError(f"train.class_weight: unknown class {name!r}; allowed: {', '.join(classes)}{hint}")
            out[index[name]] = float(w)
        return out
    raise UserError(f"train.class_weight: received {mode!r}; allowed: none, balanced or a mapping class_name: weight")


class ArrayBatches:
    """Shuffled batches (x 0..255 (B, H, W, 3) as `dtype`, y) from uint8 (N, H, W, 3) arrays.

    y is int32 (B,) class indices, or float32 (B, num_classes) soft labels when
    mixup/cutmix is on. With class_weight a third element, float32 (B,) sample
    weights, is returned. Sharding gives worker `shard_index` every
    `num_shards`-th sample of the epoch's permutation; the n % num_shards
    left-over samples are dropped so every worker runs the same number of steps.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = True, seed: int = 0,
        drop_remainder: bool = False, shard_index: int = 0, num_shards: int = 1,
        class_weight: Mapping[int, float] | None = None, mixup: float = 0.0, cutmix: float = 0.0,
        num_classes: int | None = None, dtype: str = "float32",
    ):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in [0, {num_shards}); received {shard_index}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; received {batch_size}")
        if (mixup > 0 or cutmix > 0) and not num_classes:
            raise ValueError("mixup/cutmix need num_classes (labels become one-hot)")
        self.x, self.y = x, np.asarray(y, dtype=np.int32)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_remainder = drop_remainder
        self.shard_index, self.num_shards = shard_index, num_shards
        self.mixup, self.cutmix, self.num_classes = mixup, cutmix, num_classes
        self.dtype = np.dtype(dtype)
        self.weights = None
        if class_weight is not None:
            table = np.ones(max(int(self.y.max(initial=0)) + 1, len(class_weight)), np.float32)
            for i, w in class_weight.items():
                table[int(i)] = w
            self.weights = table
        self.epoch = 0
        self._order_cache: tuple[int, np.ndarray] | None = None

    @property
    def samples_per_epoch(self) -> int:
        """Samples this shard sees per epoch."""
        return len(self.y) // self.num_shards

    def __len__(self) -> int:
        n = self.samples_per_epoch
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Sample indices of this shard for `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if self._order_cache and self._order_cache[0] == epoch:
            return self._order_cache[1]
        n = len(self.y)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        usable = (n // self.num_shards) * self.num_shards
        mine = perm[:usable][self.shard_index::self.num_shards]
        self._order_cache = (epoch, mine)
        return mine

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        idx = self.order()[i * self.batch_size:(i + 1) * self.batch_size]
        # Row by row straight into the output: no uint8 temporary, and faster than fancy
        # indexing a memmap (measured: ~30k vs ~20k rows/s of 224 px).
        x = np.empty((len(idx), *self.x.shape[1:]), self.dtype)
        for j, row in enumerate(idx):
            x[j] = self.x[row]
        y = self.y[idx]
        w = self.weights[y] if self.weights is not None else None
        if self.mixup > 0 or self.cutmix > 0:
            x, y, w = self._mix(x, y, w, i)
        return (x, y) if w is None else (x, y, w)

    def __iter__(self) -> Iterator:
        """One epoch; the next iteration reshuffles."""
        for i in range(len(self)):
            yield self[i]
        self.epoch += 1

    def _mix(self, x, y, w, i):
        rng = np.random.default_rng([self.seed, self.epoch, i, 1])
        onehot = np.eye(self.num_classes, dtype=np.float32)[y]
        use_cutmix = self.cutmix > 0 and (self.mixup <= 0 or rng.random() < 0.5)
        lam = float(rng.beta(*(2 * [self.cutmix if use_cutmix else self.mixup])))
        partner = rng.permutation(len(y))
        if use_cutmix:
            h, wd = x.shape[1:3]
            cut = np.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(wd * cut)
            cy, cx = rng.integers(h), rng.integers(wd)
            y0, y1 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
            x0, x1 = np.clip([cx - cw // 2, cx + cw // 2], 0, wd)
            x[:, y0:y1, x0:x1] = x[partner, y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * wd)  # the area actually pasted
        else:
            x = (lam * x + (1.0 - lam) * x[partner]).astype(self.dtype)
        soft = lam * onehot + (1.0 - lam) * onehot[partner]
        if w is not None:
            w = (lam * w + (1.0 - lam) * w[partner]).astype(np.float32)
        return x, soft, w
