"""`recap-label rollback` (also `--list` and `--iteration`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import DatasetArg, JsonOpt, settings_of
from recap_label.cli.output import show


@app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    dataset: DatasetArg,
    list_runs: Annotated[bool, typer.Option("--list", help="List the recorded runs and exit.")] = False,
    to: Annotated[
        Optional[str],
        typer.Option("--to", help="Roll back every label run after RUN ('copy' = all of them).", show_default=False),
    ] = None,
    iteration: Annotated[
        bool,
        typer.Option(
            "--iteration",
            help="Retire this iteration copy: unregister it so local/<base>_vlm_label_active resolves to the prior "
            "iteration.",
        ),
    ] = False,
    delete: Annotated[bool, typer.Option("--delete", help="With --iteration: also delete the copy's folder.")] = False,
    json_out: JsonOpt = None,
):
    """Undo the last label run of a copy (exact prior labels), or retire an iteration copy.

    \b
    Examples:
      recap-label rollback local/vial_v21_vlm_label_v3              # undo the last label run
      recap-label rollback local/vial_v21_vlm_label_v3 --iteration  # back to _v2
    """
    from recap_label.commands.rollback import retire_iteration, rollback_runs, run_history
    from recap_label.errors import BadInput
    from recap_label.lerobot.dataset import resolve_dataset_path

    settings = settings_of(ctx, json=json_out)
    if delete and not iteration:
        raise BadInput("--delete only applies with --iteration")
    if iteration:  # resolved inside: an interrupted retirement may have removed local/<name> already
        show(settings, retire_iteration(dataset, settings, delete), render.retired)
        return
    root = resolve_dataset_path(dataset, settings.lerobot_home)
    if list_runs:
        show(settings, run_history(root), render.run_history)
    else:
        show(settings, rollback_runs(root, to, settings.lerobot_home), render.rolled_back)
