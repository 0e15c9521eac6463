"""Batches computed ahead in threads, so loading overlaps the training step.

Keras calls a PyDataset's `__getitem__` in order on the training thread under
JAX (and from one tf.data thread under TensorFlow), so a batch built there is
time the device waits. `Prefetched` keeps the next `depth` batches in flight
on a thread pool sized to the CPUs this process may use; numpy releases the
GIL while it copies rows, so the threads run in parallel. No tf.data, so the
same path runs under every backend.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from resnet_tl.cpus import usable_cpus

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def loader_workers() -> int:
    """CPUs this process may run on (affinity mask and cgroup quota, not the machine's count)."""
    return usable_cpus()


def _pool() -> ThreadPoolExecutor:
    # One pool per process: the trainer makes new batch objects every epoch.
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(loader_workers(), thread_name_prefix="resnet-tl-loader")
        return _POOL


class Prefetched:
    """Random access to `batches` (anything with len, [i] and set_epoch); after
    batch i is asked for, batches i+1 .. i+depth are built in the background.

    Returns exactly what batches[i] returns. depth: default 2 per worker.
    """

    def __init__(self, batches, depth: int | None = None):
        self.batches = batches
        self.depth = depth if depth is not None else 2 * loader_workers()
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        with self._lock:
            fut = self._pending.pop(i, None)
            # Anything behind i will not be asked for in this pass.
            for stale in [j for j in self._pending if j < i]:
                self._pending.pop(stale).cancel()
            if self.depth > 0:
                pool = _pool()
                for j in range(i + 1, min(i + 1 + self.depth, len(self.batches))):
                    if j not in self._pending:
                        self._pending[j] = pool.submit(self.batches.__getitem__, j)
        return fut.result() if fut is not None else self.batches[i]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def set_epoch(self, epoch: int) -> None:
        """Drop batches built for the previous order, then switch order
        (a build already running finishes and is discarded)."""
        with self._lock:
            for fut in self._pending.values():
                fut.cancel()
            self._pending.clear()
        self.batches.set_epoch(epoch)
