"""`resnet-tl weights convert`: a timm/torchvision checkpoint as a resnet-tl classifier with its own classes.

The checkpoint is read, checked and mapped by ``pretrained.py``; this module
builds the classifier ``model.py`` builds for training (so the file predicts,
evaluates and exports like any resnet-tl model), fills backbone and head, and
writes either a ``.keras`` file with a sidecar or a run folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_path, atomic_write_json, atomic_write_text
from resnet_tl.models.classifier import backbone_of, build_classifier, head_of
from resnet_tl.models.pretrained import assign, check_backbone, infer_backbone, map_tensors, read_checkpoint
from resnet_tl.recipe import ModelConfig, build_recipe, dump_recipe
from resnet_tl.runs import check_new_run, create_run_dir, read_labels, write_labels, write_status

PREPROCESSING_NOTE = "inside the model: RGB 0..255 -> /255, minus ImageNet mean, over std (torchvision)"


def convert(ref: str, out: str | Path, backbone: str | None = None, image_size: int = 224,
            labels_file: str | Path | None = None, data_dir: str | None = None) -> dict:
    """A checkpoint -> a classifier keeping the checkpoint's classification layer.

    The model takes RGB pixels 0..255 (B, image_size, image_size, 3), normalises
    them inside (torchvision's ImageNet mean/std) and returns probabilities
    (B, classes). `out` ending in ``.keras``: that file, labels in the sidecar
    ``<out stem>.json``; any other name: a new run folder (recipe.yaml,
    labels.txt, model.keras) that `export` and `evaluate` take. Labels: the
    lines of `labels_file`, else class_0 .. class_<classes-1>. `data_dir`: the
    run folder's data.dir (export's parity check and int8 calibration images).
    Returns the report as a dict.
    """
    out = Path(out)
    as_run = out.suffix != ".keras"
    if as_run:
        check_new_run(out.parent, out.name)  # refuses an existing folder before any work
    elif not out.parent.is_dir():
        raise UserError(f"--out: the folder '{out.parent}' does not exist")
    tensors, path = read_checkpoint(ref)
    inferred = infer_backbone(tensors)
    if backbone is not None:
        check_backbone(inferred, backbone, ref, option="--backbone")
    if "fc.weight" not in tensors:
        raise UserError(f"weights convert: '{ref}' has no classifier (fc.weight); a headless checkpoint can only "
                        f"start a fine-tune: --set model.weights={ref}")
    groups, report = map_tensors(tensors, inferred, ref, keep_classifier=True)
    report.file = str(path)
    labels = _labels(labels_file, report.classes)
    classifier = _classifier(inferred, report.classes, image_size, groups)
    summary = {"backbone": inferred, "image_size": image_size, "classes": report.classes,
               "labels": "file" if labels_file else "class_<i>", **report.to_dict()}
    if as_run:
        return {**_write_run(out, classifier, labels, ref, inferred, image_size, report, data_dir), **summary}


    with atomic_path(out) as tmp:
        classifier.save(tmp)
    sidecar = out.with_suffix(".json")
    atomic_write_json(sidecar, {"format": "keras", "file": out.name, "labels": labels, "image_size": image_size,
                                "backbone": inferred, "preprocessing": PREPROCESSING_NOTE,
                                "converted_from": report.to_dict()}, indent=2)
    return {"model": str(out), "sidecar": str(sidecar), **summary}


def _classifier(backbone: str, classes: int, image_size: int, groups: dict):
    classifier = build_classifier(ModelConfig(backbone=backbone, weights="none"), classes, image_size)
    assign(backbone_of(classifier), {k: v for k, v in groups.items() if k != "head_logits"})
    head_of(classifier).get_layer("head_logits").set_weights([np.asarray(a, np.float32) for a in groups["head_logits"]])
    return classifier


def _write_run(out: Path, classifier, labels, ref, backbone, image_size, report, data_dir) -> dict:
    """A run folder without training (recipe.yaml, labels.txt, model.keras, status.json), so that
    `resnet-tl export` and `evaluate` take the converted model like a trained one."""
    data = {"image_size": image_size, **({"dir": str(Path(data_dir).resolve())} if data_dir else {})}
    recipe = build_recipe({"name": out.name, "data": data, "model": {"backbone": backbone, "weights": ref}})
    paths = create_run_dir(out.parent, out.name)
    atomic_write_text(paths.recipe, dump_recipe(recipe))
    write_labels(paths.labels, labels)
    with atomic_path(paths.model) as tmp:
        classifier.save(tmp)
    write_status(paths, "complete", epochs=0, converted_from=report.to_dict())
    return {"model": str(paths.model), "run_dir": str(paths.root)}


def _labels(labels_file, classes: int) -> list[str]:
    if labels_file is None:
        return [f"class_{i}" for i in range(classes)]
    labels = read_labels(labels_file, "--labels")
    if len(labels) != classes:
        raise UserError(f"--labels: '{labels_file}' has {len(labels)} class names; the checkpoint's classifier has {classes}")
    return labels
