"""`recap-label iterations`, `activate` and `register`: the loop of copies and their `local/` names."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import JsonOpt, settings_of
from recap_label.cli.output import show


@app.command("iterations")
def iterations_cmd(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Argument(help="The original, any of its iteration copies, or local/<name>.", show_default=False)
    ],
    json_out: JsonOpt = None,
):
    """One row per iteration copy of an original (found by lineage, any name): parent, runs, last run, active.

    Example:  recap-label iterations local/vial_rollout_v1_v21_vlm_label_active
    """
    from recap_label.commands.iterations import list_iterations

    settings = settings_of(ctx, json=json_out)
    show(settings, list_iterations(dataset, settings.lerobot_home), partial(render.iterations, given=dataset))


@app.command("activate")
def activate_cmd(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Argument(help="A labeled iteration copy (folder or local/<name>).", show_default=False)
    ],
    json_out: JsonOpt = None,
):
    """Point local/<original>_vlm_label_active at a labeled iteration copy (the one Stage 6 trains on).

    Example:  recap-label activate local/vial_rollout_v1_v21_vlm_label
    """
    from recap_label.commands.iterations import activate

    settings = settings_of(ctx, json=json_out)
    show(settings, activate(dataset, settings.lerobot_home), render.activated)


@app.command("register")
def register_cmd(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The copy's folder, where it is now.", show_default=False)],
    replace_registration: Annotated[
        bool,
        typer.Option(
            "--replace-registration", help="Repoint local/<name> even if it points at another existing folder."
        ),
    ] = False,
    json_out: JsonOpt = None,
):
    """Re-register a moved (or --no-register) iteration copy as local/<name>; nothing is copied.

    Example:  recap-label register /mnt/big/vial_rollout_v1_v21_vlm_label_v2
    """
    from recap_label.commands.iterations import register_copy

    settings = settings_of(ctx, json=json_out)
    show(settings, register_copy(folder, settings.lerobot_home, replace_registration), render.registered)
