"""`resnet-tl train`: parse flags, load the recipe, call `resnet_tl.training.train.train`, render."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, err, out


@cli_errors
def train(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file or shipped recipe name (default: quickstart). See `resnet-tl recipes list`.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Image folder; overrides data.dir.")] = None,
    exclude: Annotated[Optional[str], typer.Option("--exclude", metavar="FILE", help="Image paths to leave out (one per line, or a CSV with a 'path' column such as a filtered audit.csv); overrides data.exclude, recorded in the run.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Run folder name (default: recipe name + timestamp).")] = None,
    out_dir: Annotated[str, typer.Option("--out", help="Where run folders go.")] = "runs",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key: --set schedule.0.epochs=3 (repeatable).")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue an interrupted run folder from its last checkpoint.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the expanded schedule and exit without training.")] = False,
    coordinator: Annotated[Optional[str], typer.Option("--coordinator", help="Multi-worker (JAX): HOST:PORT of process 0 [env RESNET_TL_COORDINATOR].")] = None,
    num_processes: Annotated[Optional[int], typer.Option("--num-processes", help="Multi-worker: number of processes [env RESNET_TL_NUM_PROCESSES].")] = None,
    process_id: Annotated[Optional[int], typer.Option("--process-id", help="Multi-worker: this process, 0..N-1; 0 writes the run folder [env RESNET_TL_PROCESS_ID].")] = None,
    json_: JsonOpt = False,
) -> None:
    from resnet_tl.recipe import load_recipe
    from resnet_tl.runs import resume_recipe

    if resume:
        r = resume_recipe(resume, recipe, set_ or [], data)
    else:
        r = load_recipe(recipe, set_ or [], data_dir=data)
    if exclude is not None:  # set directly, like --data: a path is not YAML
        r = r.model_copy(update={"data": r.data.model_copy(update={"exclude": exclude})})
    if dry_run:
        from resnet_tl.training.schedule import schedule_table

        rows = schedule_table(r)
        emit_json(rows) if json_ else _render_plan(rows)
        return
    if resume is None:
        from resnet_tl.models.fetch import fetch_weights

        fetch_weights(r.model.weights, r.model.backbone)  # before TensorFlow's import: offline is told in seconds
    from resnet_tl.cli.progress import TrainProgress
    from resnet_tl.training.distribute import cluster_from
    from resnet_tl.training.train import train as run_training

    cluster = cluster_from(coordinator, num_processes, process_id)
    chief = cluster is None or cluster.process_id == 0
    with TrainProgress(err, enabled=not json_ and chief, data_summary=chief) as progress:
        result = run_training(r, out=out_dir, name=name, resume=resume, progress=progress, cluster=cluster)
    if not chief:
        err.print(f"worker {cluster.process_id} of {cluster.num_processes}: done; process 0 wrote the run folder", highlight=False)
        return
    if json_:
        emit_json(result.to_dict())
    else:
        _render_result(result)


def _render_plan(rows: list[dict]) -> None:
    from rich.table import Table

    # Six columns that fit 80 characters; the phase names (what --set schedule.N refers to) are never cut.
    t = Table(title="schedule", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("name", no_wrap=True, min_width=max(len(r["name"]) for r in rows))
    for name in ("epochs", "trains", "lr", "settings"):
        t.add_column(name, overflow="fold")
    for r in rows:
        lr_decay = f", lr x{r['lr_decay_per_stage']:g} per stage down" if r["lr_decay_per_stage"] != 1 else ""
        t.add_row(str(r["phase"]), r["name"], r["epochs"], ", ".join(r["stages"]), _lr_cell(r["lr"]),
                  f"{r['optimizer']}, warm-up {r['warmup_epochs']:g}, {r['decay']}{lr_decay}, "
                  f"batchnorm {r['batchnorm']}, {_features_cell(r)}")
    out.print(t)


def _lr_cell(lr) -> str:
    return lr if isinstance(lr, str) else f"{lr:g}"  # 'find': lr-find decides before the run


def _features_cell(row: dict) -> str:
    if not row["cached_features"]:
        return "live"
    return f"cached, {row['feature_cache_views']} augmented views" if row["augmented_views"] else "cached"


def _render_result(result) -> None:
    from rich.table import Table

    m = result.metrics
    t = Table("", "", title=f"run {result.run_dir}", show_header=False)
    t.add_row("val accuracy", f"{m['accuracy']:.4f}")
    t.add_row("val loss", f"{m['loss']:.4f}")
    t.add_row("best epoch", f"{result.best_epoch} of {len(result.history)}")
    t.add_row("train / val images", f"{m['n_train']} / {m['n_val']}")
    t.add_row("precision, backend", f"{result.precision}, {result.backend}")
    t.add_row("time", f"{result.seconds:.1f} s")
    out.print(t)
    out.print(f"run folder: {result.run_dir}", highlight=False)
