"""What a finished run leaves behind: best weights in model.keras, metrics.json, calibration.json,
then curves, TensorBoard logs, eval/val/ and report.html."""

from __future__ import annotations

import warnings

from resnet_tl.evaluation.evaluate import evaluate_in_memory
from resnet_tl.evaluation.html_report import write_report, write_tensorboard
from resnet_tl.evaluation.metrics import validation_metrics
from resnet_tl.evaluation.plots import plot_curves
from resnet_tl.fileio import atomic_path, atomic_write_bytes, atomic_write_json
from resnet_tl.inference.calibration import fit_calibration
from resnet_tl.models.batched import predict_probs
from resnet_tl.recipe import Recipe
from resnet_tl.runs import RunPaths, write_status
from resnet_tl.training.checkpoint import RunState, restore_best


def finish_run(recipe: Recipe, paths: RunPaths, ds, classifier, state: RunState) -> dict:
    """Restore the best weights, save model.keras, write metrics.json and calibration.json
    (temperature fitted on the validation split), mark the run complete, then write the
    artifacts a person looks at. Returns metrics.json's content."""
    restore_best(paths, classifier)
    with atomic_path(paths.model) as tmp:
        classifier.save(tmp)
    val_probs = predict_probs(classifier, ds.x_val, recipe.train.batch_size)
    metrics = validation_metrics(ds, val_probs)
    metrics["best_epoch"] = state.best_epoch
    atomic_write_json(paths.metrics, metrics)
    calibration = fit_calibration(val_probs, ds.y_val) if len(ds.y_val) else None
    if calibration is not None:
        atomic_write_json(paths.calibration, calibration)
        if calibration["warning"]:
            warnings.warn(f"{paths.calibration}: {calibration['warning']}", stacklevel=2)
    write_status(paths, "complete", epochs=len(state.history))
    write_artifacts(recipe, paths, ds, classifier, state.history, val_probs,
                    calibration["temperature"] if calibration else None)
    return metrics


def write_artifacts(recipe: Recipe, paths: RunPaths, ds, classifier, history: list[dict], val_probs, temperature) -> None:
    """plots/curves.png, tensorboard/, eval/val/ and report.html of a finished run.

    A failure of one is a warning, never a failed run: the model and
    metrics.json are already saved when this runs.
    """
    steps = (
        ("plots/curves.png", lambda: atomic_write_bytes(paths.curves, plot_curves(history))),
        ("tensorboard/", lambda: write_tensorboard(history, paths.tensorboard)),
        ("eval/val/", lambda: evaluate_in_memory(classifier, ds, recipe.evaluate, paths.eval_dir("val"), probs=val_probs,
                                                 temperature=temperature, batch_size=recipe.train.batch_size)),
        ("report.html", lambda: write_report(paths.root)),
    )
    for what, step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - reported, and the run stays complete
            warnings.warn(f"{paths.root}: could not write {what} ({type(e).__name__}: {e})", stacklevel=2)
