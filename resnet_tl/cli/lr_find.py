"""`resnet-tl lr-find`: parse flags, load the recipe, call `resnet_tl.training.lr_find.lr_find`, write the plot, render."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, err, out


@cli_errors
def lr_find(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file or shipped recipe name (default: quickstart).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Image folder; overrides data.dir.")] = None,
    phase: Annotated[int, typer.Option("--phase", help="Phase of the expanded schedule (see train --dry-run); earlier phases train first.")] = 0,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key (repeatable).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=10, help="Optimizer steps of the range test, rate rising 1e-7 -> 10.")] = 100,
    plot: Annotated[str, typer.Option("--plot", help="Where the loss-against-lr plot goes.")] = "lr_find.png",
    json_: JsonOpt = False,
) -> None:
    from resnet_tl.cli.progress import TrainProgress
    from resnet_tl.recipe import load_recipe
    from resnet_tl.training.lr_find import lr_find as run_lr_find
    from resnet_tl.training.lr_find import write_plot

    r = load_recipe(recipe, set_ or [], data_dir=data)
    with TrainProgress(err, enabled=not json_) as progress:
        result = run_lr_find(r, phase, steps=steps, progress=progress)
    write_plot(result, plot)
    if json_:
        emit_json({**result.to_dict(), "plot": plot})
        return
    out.print(f"phase {result.phase} '{result.name}' ({', '.join(result.stages)}): {len(result.lrs)} steps"
              f"{', stopped when the loss diverged' if result.stopped_early else ''}", highlight=False)
    out.print(f"suggested lr: {result.suggestion:.3g}   rule: {result.rule}", highlight=False)
    out.print(f"minimum / 10: {result.min_div_10:.3g}", highlight=False)
    out.print(f"plot: {plot}   use it: --set schedule.N.lr={result.suggestion:.3g}, or lr=find in train", highlight=False)
