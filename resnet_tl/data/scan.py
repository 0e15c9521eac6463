"""Scan an image folder: classes, splits, every file used or skipped with a reason.

Two layouts:

- ``ROOT/<class>/...``: a stratified, seeded train/val split (data.val_split).
- ``ROOT/train/<class>/...`` plus one of ``val/``, ``valid/``, ``validation/``
  and optionally ``test/``: used as given. ``train/`` without a val folder is
  split like the first layout.

Every candidate image is decoded by the decoder training uses; the decoded
pixels go straight into the cache, and files whose path, size and mtime are
unchanged since the last scan are not opened again.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from resnet_tl.data.cache import Counters, DecodeCache, Fact, decode_checked, parallel_map, read_fact
from resnet_tl.data.decode import IMAGE_EXTENSIONS, DecodeError, check_pixels
from resnet_tl.errors import UserError
from resnet_tl.recipe import DataConfig

VAL_NAMES = ("val", "valid", "validation")
# Image formats people keep beside their JPEGs; worth a warning, as they are not read.
_OTHER_IMAGE_EXTENSIONS = frozenset({".tif", ".tiff", ".heic", ".heif", ".avif", ".jfif", ".jp2", ".svg", ".ico", ".ppm", ".pgm", ".dng", ".cr2", ".nef"})
SPLIT_NAMES = ("train", *VAL_NAMES, "test")


@dataclass(frozen=True)
class Item:
    """One usable image. width/height in px after EXIF rotation; size_bytes of the file."""

    path: Path
    relpath: str
    label: int
    sha1: str
    width: int
    height: int
    size_bytes: int
    mtime_ns: int
    mode: str = ""
    format: str = ""


@dataclass(frozen=True)
class Skipped:
    """A candidate image not used; reason is one of decode.REASONS."""

    path: str
    reason: str
    detail: str = ""


@dataclass
class Scan:
    root: Path
    layout: str  # "class_folders" or "split_folders"
    classes: list[str]
    items: dict[str, list[Item]]
    skipped: list[Skipped] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # blocking: training cannot proceed
    leakage: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    image_size: int = 0
    counters: Counters = field(default_factory=Counters)
    excluded: list[str] = field(default_factory=list)  # relpaths left out by data.exclude

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """UserError with the first blocking problem (what `train` does)."""
        if self.problems:
            raise UserError(self.problems[0])


@dataclass
class _Candidate:
    split: str | None  # None: decided by the seeded split
    cls: str
    path: Path
    relpath: str


def scan_folder(
    root: str | Path, cfg: DataConfig, *, strict: bool = True,
    progress: Callable[[str, int, int], None] | None = None, cache: DecodeCache | None = None,
) -> Scan:
    """Scan `root`. strict=False records an empty class as a problem instead of raising (for reports).

    progress(stage, done, total) is called while new files are read ("hashing") and decoded ("decoding").
    """
    root = Path(root).expanduser()
    if not root.exists():
        where = "" if root.is_absolute() else f" (relative to the current folder {Path.cwd()})"
        raise UserError(f"data.dir '{root}' does not exist{where}; allowed: a folder of class subfolders or train/ val/ [test/]")
    if not root.is_dir():
        raise UserError(f"data.dir '{root}' is a file; allowed: a folder of class subfolders or train/ val/ [test/]")
    cache = cache or DecodeCache(root, cfg.cache_dir)
    ignored: Counter = Counter({"hidden": 0, "not_image_extension": 0, "outside_class_folders": 0})
    listing_warnings: list[str] = []
    layout, candidates, class_dirs = _layout_and_candidates(root, ignored, listing_warnings)
    for key in sorted(k for k in ignored if k.startswith("_")):
        listing_warnings.append(
            f"{ignored.pop(key)} '{key[1:]}' file(s) ignored; allowed extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}")
    with cache.lock():
        old = cache.load_facts()
        facts = _read_facts(candidates, old, cache, progress)
        plan = _plan(root, layout, candidates, class_dirs, facts, cfg)
        # Decode new files in the final split order, so their cache rows need no rearranging.
        todo = [it for s in plan["items"] for it in plan["items"][s] if not facts[it.relpath].verified]
        if todo and _verify(todo, facts, cache, cfg.image_size, progress, getattr(cfg, "resize", "antialias")):
            plan = _plan(root, layout, candidates, class_dirs, facts, cfg)  # a new file failed to decode
        if facts != old:
            cache.save_facts(facts)
    if strict and plan["empty_errors"]:
        raise UserError(plan["empty_errors"][0])
    return Scan(
        root=root, layout=layout, classes=plan["classes"], items=plan["items"], skipped=plan["skipped"],
        ignored=dict(ignored), warnings=listing_warnings + plan["warnings"], problems=plan["problems"],
        leakage=plan["leakage"], duplicates=plan["duplicates"], stats=_image_stats(plan["items"]),
        image_size=cfg.image_size, counters=cache.counters,
    )


def _plan(root: Path, layout: str, candidates, class_dirs, facts: dict[str, Fact], cfg: DataConfig) -> dict:
    """Everything that follows from the facts: used/skipped, classes, splits, warnings, problems."""
    usable: dict[str, list[tuple[_Candidate, Fact]]] = defaultdict(list)
    skipped: list[Skipped] = []
    skipped_by_class: dict[str, Counter] = defaultdict(Counter)
    for c in candidates:
        f = facts[c.relpath]
        reason, detail = f.reason, f.detail
        if reason is None and min(f.width, f.height) < cfg.min_size:
            reason, detail = "too_small", f"{f.width}x{f.height} px; data.min_size is {cfg.min_size}"
        if reason is None:
            try:
                check_pixels(f.width, f.height, cfg.max_pixels)
            except DecodeError as e:
                reason, detail = e.reason, e.detail
        if reason is None:
            usable[c.cls].append((c, f))
        else:
            skipped.append(Skipped(str(c.path), reason, detail))
            skipped_by_class[c.cls][reason] += 1

    warnings: list[str] = []
    problems: list[str] = []
    empty_errors: list[str] = []
    classes = []
    for cls in sorted(class_dirs):
        if usable[cls]:
            classes.append(cls)
            continue
        folder = class_dirs[cls][0]
        why = skipped_by_class[cls]
        what = (f"{sum(why.values())} skipped: " + ", ".join(f"{n} {r}" for r, n in sorted(why.items()))) if why else "no image files"
        if cfg.skip_empty_classes:
            warnings.append(f"class folder '{folder}' has no usable image ({what}); skipped (data.skip_empty_classes)")
            continue
        msg = f"class folder '{folder}' has no usable image ({what}); remove it or set data.skip_empty_classes: true"
        empty_errors.append(msg)
        problems.append(msg)
        classes.append(cls)
    for cls in classes:
        n = len(usable[cls])
        if 0 < n < cfg.few_images_warning:
            warnings.append(f"class '{cls}' has only {n} usable image{'s' * (n != 1)} (data.few_images_warning: {cfg.few_images_warning})")
    with_images = [c for c in classes if usable[c]]
    if len(with_images) < 2:
        problems.append(
            f"data.dir '{root}': {len(with_images)} class{'es' * (len(with_images) != 1)} with usable images"
            f"{' (' + ', '.join(with_images) + ')' if with_images else ''}; training needs at least 2"
        )

    label = {c: i for i, c in enumerate(classes)}
    items = _assign_splits(layout, usable, label, cfg)
    _split_warnings(layout, items, classes, warnings, problems)
    leakage, duplicates = _leakage_and_duplicates(items, classes)
    if leakage:
        warnings.append(f"{len(leakage)} image{'s' * (len(leakage) != 1)} appear in more than one split (leakage); see the report")
    conflicting = [d for d in duplicates if len(set(d["classes"])) > 1]
    if conflicting:
        warnings.append(f"{len(conflicting)} image{'s' * (len(conflicting) != 1)} filed under more than one class "
                        f"(identical files with different labels; their paths are under 'duplicates' in the report)")
    return {"classes": classes, "items": items, "skipped": skipped, "warnings": warnings, "problems": problems,
            "empty_errors": empty_errors, "leakage": leakage, "duplicates": duplicates}


# ------------------------------------------------------------- listing
def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _layout_and_candidates(root: Path, ignored: Counter, warnings: list[str]):
    """Pick the layout; list candidate images (sorted) and each class's folders."""
    subdirs, _ = _list_dir(root, ignored, warnings, count_files_as="outside_class_folders")
    by_lower = {d.name.lower(): d for d in subdirs}
    candidates: list[_Candidate] = []
    class_dirs: dict[str, list[str]] = defaultdict(list)
    if "train" in by_lower:
        vals = [by_lower[n] for n in VAL_NAMES if n in by_lower]
        if len(vals) > 1:
            raise UserError(f"data.dir '{root}' has {', '.join(d.name + '/' for d in vals)}; allowed: one validation folder")
        splits = {"train": by_lower["train"]}
        if vals:
            splits["val"] = vals[0]
        if "test" in by_lower:
            splits["test"] = by_lower["test"]
        for d in subdirs:
            if d not in splits.values():
                warnings.append(f"folder '{d}' ignored: with a train/ folder, only {', '.join(s + '/' for s in SPLIT_NAMES)} are read")
        for split, sdir in splits.items():
            cdirs, _ = _list_dir(sdir, ignored, warnings, count_files_as="outside_class_folders")
            for cdir in cdirs:
                class_dirs[cdir.name].append(str(cdir))
                candidates += _class_files(root, cdir, split if split != "train" or vals else None, ignored, warnings)
        return "split_folders", candidates, class_dirs
    present = [d.name for d in subdirs if d.name.lower() in SPLIT_NAMES]
    if present:
        warnings.append(f"data.dir '{root}' has {', '.join(present)} but no train/ folder; every subfolder is read as a class")
    for cdir in subdirs:
        class_dirs[cdir.name].append(str(cdir))
        candidates += _class_files(root, cdir, None, ignored, warnings)
    return "class_folders", candidates, class_dirs


def _list_dir(folder: Path, ignored: Counter, warnings: list[str], count_files_as: str):
    """Visible subfolders (sorted) and files of one folder; loose files are counted as ignored."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        warnings.append(f"folder '{folder}' cannot be read ({e.strerror}); ignored")
        return [], []
    dirs, files = [], []
    for e in entries:
        if _is_hidden(e.name):
            ignored["hidden"] += _count_files(Path(e.path)) if _isdir(e) else 1
        elif _isdir(e):
            dirs.append(Path(e.path))
        else:
            files.append(Path(e.path))
            ignored[count_files_as] += 1
    return dirs, files


def _isdir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _class_files(root: Path, cdir: Path, split: str | None, ignored: Counter, warnings: list[str]) -> list[_Candidate]:
    """Every image file under a class folder, nested folders included; sorted by path."""
    out = []
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(cdir, followlinks=True, onerror=lambda e: warnings.append(
            f"folder '{e.filename}' cannot be read ({e.strerror}); ignored")):
        try:
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop
                dirnames[:] = []
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
        except OSError:
            pass
        for d in [d for d in dirnames if _is_hidden(d)]:
            ignored["hidden"] += _count_files(Path(dirpath) / d)
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if _is_hidden(name):
                ignored["hidden"] += 1
            elif p.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored["not_image_extension"] += 1
                if p.suffix.lower() in _OTHER_IMAGE_EXTENSIONS:
                    ignored["_" + p.suffix.lower()] += 1
            else:
                out.append(_Candidate(split, cdir.name, p, p.relative_to(root).as_posix()))
    return out


# ---------------------------------------------------------------- facts
def _read_facts(candidates: list[_Candidate], old: dict[str, Fact], cache: DecodeCache, progress) -> dict[str, Fact]:
    """Fact per candidate: from the cache when (size, mtime_ns) match, else hashed + header read now."""
    by_sha1 = {f.sha1: f for f in old.values() if f.sha1 and f.verified}
    facts: dict[str, Fact] = {}
    todo = []
    for c in candidates:
        try:
            st = c.path.stat()
        except OSError as e:
            facts[c.relpath] = Fact(0, 0, None, reason="unreadable", detail=e.strerror or str(e), verified=True)
            continue
        f = old.get(c.relpath)
        if f is not None and f.size == st.st_size and f.mtime_ns == st.st_mtime_ns and f.reason != "unreadable":
            facts[c.relpath] = f
        else:
            todo.append((c, st.st_size, st.st_mtime_ns))
    for i, (c, f) in enumerate(zip(todo, parallel_map(lambda job: read_fact(job[0].path, job[1], job[2], by_sha1.get), todo))):
        facts[c[0].relpath] = f
        cache.counters.hashed += f.sha1 is not None
        if progress and (i % 64 == 0 or i == len(todo) - 1):
            progress("hashing", i + 1, len(todo))
    return facts


def _verify(items: list[Item], facts: dict[str, Fact], cache: DecodeCache, image_size: int, progress,
            resize: str = "antialias") -> bool:
    """Fully decode `items` (in order) into the cache rows; returns True when any failed."""
    store = cache.store(image_size, resize)
    failed = False
    jobs = parallel_map(lambda it: decode_checked(it.path, it.sha1, image_size, resize), items)
    try:
        for i, (it, (pixels, err)) in enumerate(zip(items, jobs)):
            f = facts[it.relpath]
            if err is not None:
                facts[it.relpath] = replace(f, reason=err.reason, detail=err.detail, verified=True)
                failed = True
            else:
                facts[it.relpath] = replace(f, verified=True)
                cache.counters.decoded += 1
                cache.fresh.add(it.sha1)
                if store.lookup(it.relpath, it.sha1) is None:
                    store.append(it.relpath, it.sha1, pixels)
            if progress and (i % 16 == 0 or i == len(items) - 1):
                progress("decoding", i + 1, len(items))
    finally:
        store.commit()
    return failed


# --------------------------------------------------------------- splits
def _assign_splits(layout, usable, label, cfg: DataConfig) -> dict[str, list[Item]]:
    items: dict[str, list[Item]] = {"train": [], "val": []}
    for cls, idx in label.items():
        pending = []
        for c, f in usable[cls]:
            it = Item(c.path, c.relpath, idx, f.sha1, f.width, f.height, f.size, f.mtime_ns, f.mode, f.format)
            if c.split is None:
                pending.append(it)
            else:
                items.setdefault(c.split, []).append(it)
        if pending:
            train, val = _stratum_split(pending, cfg.val_split, cfg.seed)
            items["train"] += train
            items["val"] += val
    for split in items:
        items[split].sort(key=lambda it: (it.label, it.relpath))
    return items


def _stratum_split(items: list[Item], val_split: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Seeded split of one class. Identical images stay together, and the order comes from
    hashing (seed, content), so adding one image moves at most one other across the boundary."""
    n = len(items)
    n_val = min(max(round(n * val_split), 1), n - 1) if n >= 2 else 0
    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        groups[it.sha1].append(it)
    order = sorted(groups, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
    train, val = [], []
    for sha in order:
        (val if len(val) < n_val else train).extend(groups[sha])
    if not train:  # every image identical: nothing useful to validate on
        train, val = val, []
    return train, val


def _split_warnings(layout, items, classes, warnings, problems) -> None:
    counts = {s: Counter(it.label for it in its) for s, its in items.items()}
    if layout == "split_folders":
        for i, cls in enumerate(classes):
            if counts["train"][i] == 0 and any(counts[s][i] for s in counts):
                warnings.append(f"class '{cls}' has no training images (only in {', '.join(s for s in counts if counts[s][i])})")
            if "val" in counts and counts["val"][i] == 0 and counts["train"][i]:
                warnings.append(f"class '{cls}' has no validation images")
    if not items["train"] and len(classes) >= 2:
        problems.append("no usable training images")
    if not items["val"] and len(classes) >= 2:
        problems.append("no usable validation images; add a val/ folder or more images per class (data.val_split)")


def _leakage_and_duplicates(items, classes):
    by_sha: dict[str, list[tuple[str, Item]]] = defaultdict(list)
    for split, its in items.items():
        for it in its:
            by_sha[it.sha1].append((split, it))
    leakage, duplicates = [], []
    for sha, group in sorted(by_sha.items()):
        if len(group) < 2:
            continue
        splits = sorted({s for s, _ in group}, key=list(items).index)
        if len(splits) > 1:
            leakage.append({"hash": sha, "paths": [str(it.path) for _, it in group], "splits": [s for s, _ in group]})
        for split in splits:
            same = [it for s, it in group if s == split]
            if len(same) > 1:
                duplicates.append({"hash": sha, "split": split, "paths": [str(it.path) for it in same],
                                   "classes": [classes[it.label] for it in same]})
    return leakage, duplicates


def _image_stats(items) -> dict:
    all_items = [it for its in items.values() for it in its]
    if not all_items:
        return {"count": 0}

    def mmm(values):
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    return {
        "count": len(all_items),
        "width": mmm([it.width for it in all_items]),
        "height": mmm([it.height for it in all_items]),
        "modes": dict(Counter(it.mode for it in all_items).most_common()),
        "formats": dict(Counter(it.format for it in all_items).most_common()),
        "bytes": sum(it.size_bytes for it in all_items),
    }
