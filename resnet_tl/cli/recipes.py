"""`resnet-tl recipes list|show`: the recipes shipped in recipes/."""

from __future__ import annotations

from typing import Annotated

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, out

app = typer.Typer(help="List and show the shipped recipes.", no_args_is_help=True)


@app.command("list", help="A table of shipped recipes: name and when to use it.")
@cli_errors
def list_(json_: JsonOpt = False) -> None:
    from resnet_tl.recipe import recipe_summaries

    rows = recipe_summaries()
    if json_:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table("name", "description", title="shipped recipes (resnet-tl train NAME)")
    for r in rows:
        table.add_row(r["name"], r["description"])
    out.print(table)


@app.command(help="Print a shipped recipe's YAML.")
@cli_errors
def show(name: Annotated[str, typer.Argument(help="Recipe name, e.g. quickstart.")]) -> None:
    from resnet_tl.recipe import resolve_recipe_path

    path = resolve_recipe_path(name)
    # Plain write: the YAML must survive copy-paste, with no markup or wrapping.
    typer.echo(path.read_text(encoding="utf-8"), nl=False)
