"""`resnet-tl data audit`: suspected wrong labels, near-duplicates and outliers of an image folder.

`audit_folder(dir, run=RUN | backbone=B, weights=W)` decodes the folder through the decode cache,
takes pooled backbone features (a run's own backbone, or any backbone of the table; kept in the
dataset's cache folder, so a second audit skips the model), runs `resnet_tl.data.audit` and
writes into `out` (default RUN/audit with a run, where report.html then shows it; else ./audit)::

    audit.csv  audit.json  thumbs/*.png
    label_errors/<given>__as__<suggested>/<rank>_<file>   symlinks to the images, for a file browser
    duplicates/<rank>_<split>-<split>/{a,b}_<file>
    outliers/<rank>_<file>

Splits are the ones training uses (train/ val/ [test/], or the seeded split of class folders).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from resnet_tl.data import audit as core
from resnet_tl.data import load_dataset
from resnet_tl.data.cache import dataset_cache_dir
from resnet_tl.data.phash import hashes
from resnet_tl.errors import UserError
from resnet_tl.evaluation.evaluate import png_bytes
from resnet_tl.evaluation.html_report import write_report
from resnet_tl.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from resnet_tl.models.batched import predict_batched
from resnet_tl.recipe import DataConfig, load_recipe
from resnet_tl.runs import open_run

FINDINGS = ("label_errors", "duplicates", "outliers")
THUMBS = 24  # thumbnails per finding kept for report.html
CSV_FIELDS = ("finding", "rank", "path", "split", "given", "suggested", "score", "other_path", "other_split", "detail")


def audit_folder(directory: str | Path, *, run: str | Path | None = None, backbone: str | None = None, weights: str = "none",
                 image_size: int | None = None, out: str | Path | None = None, cache_dir: str | None = None,
                 progress=None) -> dict:
    """Audit `directory`; returns the JSON document also written to OUT/audit.json (with "out_dir")."""
    if (run is None) == (backbone is None):
        raise UserError("data audit: received " + ("both --run and --backbone" if run else "neither --run nor --backbone")
                        + "; allowed: --run RUN, or --backbone B [--weights W]")
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"data audit: folder '{directory}' not found; allowed: an image folder (class subfolders or train/ val/ [test/])")
    run_paths = open_run(run, finished=True) if run is not None else None
    if run_paths is not None:
        data_cfg = load_recipe(str(run_paths.recipe), []).data
        size = data_cfg.image_size
        seed, val_split = data_cfg.seed, data_cfg.val_split
    else:
        size, seed, val_split = image_size or 64, 42, 0.2
    cfg = DataConfig(dir=str(root), image_size=size, seed=seed, val_split=val_split, cache_dir=cache_dir)
    out_dir = Path(out) if out is not None else (run_paths.audit if run_paths is not None else Path("audit"))
    if root.resolve() == out_dir.resolve() or root.resolve() in out_dir.resolve().parents:
        raise UserError(f"--out '{out_dir}': inside the data folder '{root}'; allowed: a folder outside the data")
    started = time.perf_counter()
    ds = load_dataset(cfg, progress=progress)
    splits = [s for s in ("train", "val", "test") if getattr(ds, f"x_{s}") is not None]
    x = np.concatenate([np.asarray(getattr(ds, f"x_{s}")) for s in splits])
    y = np.concatenate([np.asarray(getattr(ds, f"y_{s}")) for s in splits]).astype(np.int64)
    paths = [str(p) for s in splits for p in getattr(ds, f"paths_{s}")]
    split_of = [s for s in splits for _ in getattr(ds, f"paths_{s}")]
    sha1s = [it.sha1 for s in splits for it in ds.scan.items[s]]
    model_id = _model_id(run_paths, backbone, weights)
    feats, cached = _features(x, size, model_id, sha1s, dataset_cache_dir(root, cache_dir), run_paths, backbone, weights)
    t_feat = time.perf_counter()
    found = core.audit(feats, y, hashes(x), len(ds.classes))
    t_audit = time.perf_counter()
    result = _document(found, ds.classes, y, paths, split_of, root, model_id, size)
    result["seconds"] = {"features": round(t_feat - started, 3), "audit": round(t_audit - t_feat, 3)}
    result["features_cached"] = cached
    _write(out_dir, result, x)
    if run_paths is not None and out_dir.resolve() == run_paths.audit.resolve():
        write_report(run_paths.root)  # report.html gains its "Data audit" section
    return {**result, "out_dir": str(out_dir)}


def _model_id(run_paths, backbone: str | None, weights: str) -> str:
    if run_paths is not None:
        h = hashlib.sha1()
        with open(run_paths.model, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return f"run {run_paths.root} model.keras sha1 {h.hexdigest()[:12]}"
    stamp = ""
    if Path(weights).is_file():
        st = Path(weights).stat()
        stamp = f" ({st.st_size} bytes, mtime {st.st_mtime_ns})"
    return f"{backbone} weights {weights}{stamp}"


def _features(x, size: int, model_id: str, sha1s: list[str], cache_root: Path, run_paths, backbone, weights):
    """(pooled features (N, C) float32, whether they came from the cache)."""
    key = hashlib.sha1("\n".join([model_id, str(size), *sha1s]).encode()).hexdigest()[:20]
    path = cache_root / "features" / f"{key}.npy"
    if path.is_file():
        feats = np.load(path)
        if feats.shape[0] == len(x):
            return feats, True
    extractor = _extractor(run_paths, backbone, weights, size)
    feats = predict_batched(extractor, x, 64) if len(x) else np.zeros((0, 1), "float32")
    buf = io.BytesIO()
    np.save(buf, feats.astype("float32"))
    atomic_write_bytes(path, buf.getvalue())
    return feats, False


def _extractor(run_paths, backbone: str | None, weights: str, size: int):
    """Pixels (B, S, S, 3) 0..255 -> pooled features (B, C): a run's model minus its head, or a bare backbone.

    Keras is imported here, not at the top: an audit whose features are cached never loads it (seconds saved).
    """
    from resnet_tl.kerasenv import keras_module
    from resnet_tl.models.backbones import spec_of
    from resnet_tl.models.classifier import feature_extractor, preprocess
    from resnet_tl.models.resnets import build_backbone

    keras = keras_module()
    if run_paths is not None:
        return feature_extractor(keras.saving.load_model(run_paths.model))
    spec = spec_of(backbone)
    net = build_backbone(backbone, size, weights)
    inputs = keras.Input((size, size, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(net(preprocess(inputs, spec.preprocessing)))
    return keras.Model(inputs, pooled, name="features")


def _document(found: core.Audit, classes: list[str], y, paths, split_of, root: Path, model_id: str, size: int) -> dict:
    issues = [{"rank": r, "index": i.index, "path": paths[i.index], "split": split_of[i.index], "given": classes[i.given],
               "suggested": classes[i.suggested], "given_probability": round(i.given_probability, 4),
               "suggested_probability": round(i.suggested_probability, 4)} for r, i in enumerate(found.issues, 1)]
    dups = [{"rank": r, "index": p["i"], "other_index": p["j"], "path": paths[p["i"]], "other_path": paths[p["j"]],
             "split": split_of[p["i"]], "other_split": split_of[p["j"]], "across_splits": split_of[p["i"]] != split_of[p["j"]],
             "cosine": round(p["cosine"], 4), "dhash": p["dhash"], "phash": p["phash"], "colour": p["colour"], "by": p["by"]}
            for r, p in enumerate(sorted(found.duplicates, key=lambda p: split_of[p["i"]] == split_of[p["j"]]), 1)]
    far = [{"rank": r, "index": int(i), "path": paths[i], "split": split_of[i], "given": classes[y[i]],
            "similarity": round(float(found.similarity[i]), 4)} for r, i in enumerate(found.outliers, 1)]
    return {
        "root": str(root), "model": model_id, "image_size": size, "images": len(paths), "classes": list(classes),
        "counts": {"label_errors": len(issues), "duplicates": len(dups),
                   "duplicates_across_splits": sum(d["across_splits"] for d in dups), "outliers": len(far)},
        "label_errors": issues, "duplicates": dups, "outliers": far,
    }


def _write(out_dir: Path, doc: dict, x) -> None:
    """audit.csv, audit.json, thumbs/ and the symlink folders (ours replaced, nothing else touched)."""
    for name in (*FINDINGS, "thumbs"):
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)
    for kind in FINDINGS:
        for row in doc[kind]:
            folder = out_dir / kind
            if kind == "label_errors":
                folder = folder / f"{_safe(row['given'])}__as__{_safe(row['suggested'])}"
            if kind == "duplicates":
                folder = folder / f"{row['rank']:04d}_{row['split']}-{row['other_split']}"
                _link(row["path"], folder / f"a_{Path(row['path']).name}")
                _link(row["other_path"], folder / f"b_{Path(row['other_path']).name}")
            else:
                _link(row["path"], folder / f"{row['rank']:04d}_{Path(row['path']).name}")
            if row["rank"] <= THUMBS:
                for side, index in (("", row["index"]), ("other_", row.get("other_index"))):
                    if index is not None:
                        row[f"{side}thumb"] = f"thumbs/{kind}_{row['rank']:04d}{'b' if side else ''}.png"
                        atomic_write_bytes(out_dir / row[f"{side}thumb"], png_bytes(np.asarray(x[index])))
    atomic_write_json(out_dir / "audit.json", doc, indent=2)
    atomic_write_text(out_dir / "audit.csv", _csv(doc))


def _csv(doc: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in doc["label_errors"]:
        w.writerow({"finding": "label_error", "rank": r["rank"], "path": r["path"], "split": r["split"], "given": r["given"],
                    "suggested": r["suggested"], "score": r["given_probability"],
                    "detail": f"p(given)={r['given_probability']} p(suggested)={r['suggested_probability']}"})
    for r in doc["duplicates"]:
        w.writerow({"finding": "duplicate", "rank": r["rank"], "path": r["path"], "split": r["split"], "score": r["cosine"],
                    "other_path": r["other_path"], "other_split": r["other_split"],
                    "detail": f"by {r['by']}: cosine={r['cosine']} dhash={r['dhash']} phash={r['phash']} colour={r['colour']}"})
    for r in doc["outliers"]:
        w.writerow({"finding": "outlier", "rank": r["rank"], "path": r["path"], "split": r["split"], "given": r["given"],
                    "score": r["similarity"], "detail": f"best class-centroid cosine {r['similarity']}"})
    return buf.getvalue()


def _link(target: str, link: Path) -> None:
    """A symlink to the image (a copy where the file system has none)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(os.path.abspath(target), link)
    except OSError:
        shutil.copy2(target, link)


def _safe(name: str) -> str:
    """A class name as one folder name."""
    return re.sub(r"[/\\\0]", "_", name) or "_"
