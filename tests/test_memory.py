"""Memory that must not grow with the data or the model: checkpoint writes, export's parity check, the decode cache.

Peaks are measured with tracemalloc, which sees numpy's buffers as well as Python objects.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from resnet_tl import checkpoint


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_write_streams_to_disk(tmp_path, monkeypatch):
    # 24 variables of 4 MB: a checkpoint of 96 MB. Building the npz in memory
    # first held it about twice over (buffer + its copy).
    arrays = {f"model/{i:05d}": np.full((1024, 1024), i, np.float32) for i in range(24)}
    total = sum(a.nbytes for a in arrays.values())
    sizes = []
    dest = tmp_path / "last.npz"

    def fault_point(name):  # where the SIGKILL tests kill the process
        assert name == "checkpoint"
        (partial,) = tmp_path.glob(".last.npz.partial-*")
        sizes.append(partial.stat().st_size)

    monkeypatch.setattr(checkpoint.faults, "point", fault_point)
    peak = _peak(lambda: checkpoint.save_arrays(dest, arrays))
    assert peak < 0.25 * total, f"peak {peak / 1e6:.1f} MB while writing {total / 1e6:.0f} MB"
    # The fault point still fires once, with about half of the file on disk.
    assert len(sizes) == 1 and 0.4 * total < sizes[0] < 0.6 * total
    with np.load(dest) as z:
        assert sorted(z.files) == sorted(arrays)
        assert all(np.array_equal(z[k], v) for k, v in arrays.items())
    assert not list(tmp_path.glob(".last.npz.partial-*"))
