"""`recap-label unretire`: bring a retired iteration copy back into the loop."""

from __future__ import annotations

from typing import Annotated

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import JsonOpt, settings_of
from recap_label.cli.output import show


@app.command("unretire")
def unretire_cmd(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Argument(help="The retired copy's folder (retiring unregistered local/<name>).", show_default=False)
    ],
    replace_registration: Annotated[
        bool,
        typer.Option(
            "--replace-registration", help="Repoint local/<name> even if it points at another existing folder."
        ),
    ] = False,
    json_out: JsonOpt = None,
):
    """Undo `rollback --iteration` (without --delete): registered as local/<name> again, live in
    `iterations`, labelable and eligible for `_active` (set when none exists and it is labeled).

    Example:  recap-label unretire /data/vial_rollout_v1_v21_vlm_label_v2
    """
    from recap_label.commands.iterations import unretire

    settings = settings_of(ctx, json=json_out)
    show(settings, unretire(dataset, settings.lerobot_home, replace_registration), render.unretired)
