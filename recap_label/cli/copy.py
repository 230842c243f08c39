"""`recap-label copy`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import AdvColOpt, JsonOpt, settings_of
from recap_label.cli.output import byte_progress, show


@app.command("copy")
def copy_cmd(
    ctx: typer.Context,
    src: Annotated[
        str, typer.Argument(help="Source dataset folder or local/<name>. Only ever read.", show_default=False)
    ],
    dest: Annotated[
        Optional[Path],
        typer.Argument(
            help="Destination folder, any name (the lineage record says what it is). [default: "
            "<original>_vlm_label beside SRC, or the next _vN]",
            show_default=False,
        ),
    ] = None,
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Do not register DEST in the LeRobot cache as local/<dest-name>.")
    ] = False,
    replace_registration: Annotated[
        bool,
        typer.Option(
            "--replace-registration", help="Repoint an existing local/<dest-name> cache symlink that points elsewhere."
        ),
    ] = False,
    from_original: Annotated[
        bool,
        typer.Option(
            "--from-original",
            help="Copy an original that already has iteration copies anyway (a new line: no parent, the original's "
            "labels).",
        ),
    ] = False,
    adv_col: AdvColOpt = None,
    json_out: JsonOpt = None,
):
    """Make a standalone labeled copy of a dataset (the safe `cp -rL` + `ln -sfn`).

    Every symlink is materialized, the copy is built in a hidden temporary folder,
    verified byte for byte, renamed into place, given a lineage record, and registered
    as local/<dest-name> in the LeRobot cache.

    Example:  recap-label copy ~/data/vial_rollout_v1_v21
    """
    from recap_label.commands.copy import copy_dataset
    from recap_label.lerobot.dataset import resolve_dataset_path

    settings = settings_of(ctx, adv_col=adv_col, json=json_out)
    src_path = resolve_dataset_path(src, settings.lerobot_home)
    bar = byte_progress(settings)
    try:
        result = copy_dataset(
            src,
            src_path,
            dest,
            adv_col=settings.adv_col,
            lerobot_home=settings.lerobot_home,
            do_register=not no_register,
            replace_registration=replace_registration,
            from_original=from_original,
            progress=bar,
        )
    finally:
        bar.close()  # also on Ctrl-C or an error: the next line must not land on the bar
    show(settings, result, render.copied)
