"""`recap-label config`."""

from __future__ import annotations

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import JsonOpt, settings_of
from recap_label.cli.output import show


@app.command("config")
def config_cmd(ctx: typer.Context, json_out: JsonOpt = None):
    """Show the effective configuration and where each value came from.

    Precedence: flags > RECAP_LABEL_* environment > TOML file > defaults.

    Example:  RECAP_LABEL_HUMAN_COL=is_human recap-label config
    """
    settings = settings_of(ctx, json=json_out)
    show(settings, settings, render.configuration)
