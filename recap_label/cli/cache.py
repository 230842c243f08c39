"""`recap-label cache`: the caches kept outside the datasets (dry-run values, converted models)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import JsonOpt, settings_of
from recap_label.cli.output import show


@app.command("cache")
def cache_cmd(
    ctx: typer.Context,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the listed entries (only caches: no data).")] = False,
    kind: Annotated[
        Optional[str],
        typer.Option(
            "--kind",
            help="Only 'dry-run' (a dry run's values) or 'models' (converted value models).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = None,
):
    """List (or --clear) what recap-label caches outside the datasets: the values a `label --dry-run`
    kept for the next `label`, and value models converted to safetensors.

    \b
    Examples:
      recap-label cache                          # what is kept, and its size
      recap-label cache --clear --kind dry-run   # drop the dry runs' values
    """
    from recap_label.commands.cache import clear_caches, kinds_of, list_caches

    settings = settings_of(ctx, json=json_out)
    kinds = kinds_of(kind)
    show(settings, clear_caches(settings, kinds) if clear else list_caches(settings, kinds), render.caches)
