"""data.prefetch: batches built ahead in threads are exactly the batches asked for."""

from __future__ import annotations

import threading
import time

import numpy as np
from helpers import affinity_capped_by_quota

from resnet_tl.data.batches import ArrayBatches
from resnet_tl.data.prefetch import Prefetched, loader_workers


def _arrays(n=37, size=4):
    x = (np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, size, size, 3), np.uint8))
    return x, np.arange(n, dtype=np.int32) % 3


def test_prefetched_batches_equal_direct_batches_in_any_order_and_epoch():
    x, y = _arrays()
    direct = ArrayBatches(x, y, 5, seed=4, dtype="uint8")
    ahead = Prefetched(ArrayBatches(x, y, 5, seed=4, dtype="uint8"), depth=3)
    for epoch in (0, 1):
        direct.set_epoch(epoch)
        ahead.set_epoch(epoch)
        # In order (as fit reads), then a restart and random access (as Keras' spec peek does).
        for i in [*range(len(direct)), 0, 1, 5, 2, 7, 3]:
            got, want = ahead[i], direct[i]
            assert got[0].dtype == np.uint8
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


class _Slow:
    """3 batches that each take 50 ms to build, recording the building thread."""

    def __init__(self):
        self.threads = {}

    def __len__(self):
        return 3

    def __getitem__(self, i):
        time.sleep(0.05)
        self.threads[i] = threading.current_thread().name
        return i

    def set_epoch(self, epoch):
        pass


def test_next_batches_are_built_on_loader_threads_while_the_caller_works():
    slow = _Slow()
    ahead = Prefetched(slow, depth=2)
    assert ahead[0] == 0 and slow.threads[0] == threading.current_thread().name
    time.sleep(0.15)  # the "training step": batches 1 and 2 get built meanwhile
    t0 = time.perf_counter()
    assert [ahead[1], ahead[2]] == [1, 2]
    assert time.perf_counter() - t0 < 0.04  # already there: no 50 ms build on this thread
    assert slow.threads[1].startswith("resnet-tl-loader") and slow.threads[2].startswith("resnet-tl-loader")


def test_loader_workers_follow_the_affinity_mask_capped_by_the_cgroup_quota(monkeypatch):
    import os

    from resnet_tl import cpus

    assert loader_workers() == affinity_capped_by_quota()  # this machine, whatever its quota
    mask = len(os.sched_getaffinity(0))
    # Under a quota (docker --cpus=Q) the mask alone is wrong: the old assertion failed at Q=1 on 2 CPUs.
    for quota, expected in ((None, mask), (0.5, 1), (1.0, 1), (1.5, min(mask, 2)), (64.0, mask)):
        monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda *a, q=quota: q)
        assert loader_workers() == expected, quota
