"""Memory that must not grow with the data or the model: checkpoint writes, export's parity check, the decode cache.

Peaks are measured with tracemalloc, which sees numpy's buffers as well as Python objects.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from resnet_tl.training import checkpoint


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


# ------------------------------------------------------------------ decode cache
def test_adding_one_image_decodes_one_and_rewrites_the_rows_as_the_readme_says(tmp_path):
    # The README ("Decoded once") states this cost; the figures for a real size are in BENCHMARKS.md.
    from images import make_class_folder, noise, save
    from resnet_tl.data import load_dataset
    from resnet_tl.recipe import DataConfig

    root = make_class_folder(tmp_path / "ds", {"a": 20, "b": 20}, size=20)
    cfg = DataConfig(dir=str(root), cache_dir=str(tmp_path / "cache"), image_size=8)
    load_dataset(cfg)
    rows = lambda: sorted((tmp_path / "cache").rglob("rows-*.u8"))  # noqa: E731
    (before,) = rows()
    save(noise(20, 20, seed=999), root / "a" / "000a.png")  # sorts early: every later row moves
    ds = load_dataset(cfg)
    assert ds.stats["decoded"] == 1 and ds.stats["hashed"] == 1
    assert ds.stats["copied"] == 41  # every row, written once more into a new rows file in the new order
    (after,) = rows()
    assert after != before and after.stat().st_size == 41 * 8 * 8 * 3
    assert "000a.png" in {p.name for p in ds.paths_train + ds.paths_val}
