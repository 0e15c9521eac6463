"""The `resnet-tl` command line: mounts one module per command or group.

Nothing here imports Keras or TensorFlow; each command imports the library
when it runs, so `resnet-tl --help` answers at once. Help texts that list
formats or backbones are built from their tables (`resnet_tl.formats`,
`resnet_tl.models.backbones`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from resnet_tl.cli import data as data_cmd
from resnet_tl.cli import recipes as recipes_cmd
from resnet_tl.cli import weights as weights_cmd
from resnet_tl.cli.bench import bench
from resnet_tl.cli.evaluate import evaluate
from resnet_tl.cli.export import export
from resnet_tl.cli.info import info
from resnet_tl.cli.lr_find import lr_find
from resnet_tl.cli.predict import predict
from resnet_tl.cli.train import train
from resnet_tl.formats import titles

app = typer.Typer(
    name="resnet-tl",
    help=f"Fine-tune Keras ResNets on image folders from a YAML recipe; evaluate; export ({titles()}).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from resnet_tl import __version__

        typer.echo(f"resnet-tl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    pass  # only the --version option; the help text is the app's


app.command(help="Fine-tune a ResNet on an image folder from a recipe.")(train)
app.command(name="lr-find", help="Learning-rate range test of a recipe's phase: writes lr_find.png and suggests a rate.")(lr_find)
app.command(help="Evaluate a run or a model file on a split; writes eval/<split>/ and refreshes report.html.")(evaluate)
app.command(help=f"Export a run ({titles()}) and check each artifact in its runtime.")(export)
app.command(help="Predict classes of image files, folders or globs with a run or a model file.")(predict)
app.add_typer(recipes_cmd.app, name="recipes")
app.add_typer(data_cmd.app, name="data")
app.add_typer(weights_cmd.app, name="weights")
app.command(help="Training and inference images/s of a recipe's model on synthetic data.")(bench)
app.command(help="Versions, backend, devices, mixed precision and XLA support, cache folder.")(info)


def main() -> None:
    app()
