"""`recap-label verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import AdvColOpt, DatasetArg, HumanColOpt, JsonOpt, McValueColOpt, settings_of
from recap_label.cli.output import show


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    dataset: DatasetArg,
    episodes: Annotated[bool, typer.Option("--episodes", help="Add a per-episode table.")] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            "--plot",
            help="Write a PNG: advantage histogram with the threshold, V over time for a few episodes.",
            show_default=False,
        ),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Finish an interrupted commit first (complete or undo it); without it verify only reads."
        ),
    ] = False,
    human_col: HumanColOpt = None,
    adv_col: AdvColOpt = None,
    mc_value_col: McValueColOpt = None,
    json_out: JsonOpt = None,
):
    """Print the adv_ind breakdown by intervention and check the labeled copy's invariants.

    Only reads: an interrupted commit is reported, and finished with --repair (or by the next
    label or rollback). Exit 0 when every invariant holds, 1 when one fails, 2 on bad input.

    Example:  recap-label verify local/vial_rollout_v1_v21_vlm_label --episodes
    """
    from recap_label.commands.verify import run_verify
    from recap_label.lerobot.dataset import resolve_dataset_path

    settings = settings_of(ctx, human_col=human_col, adv_col=adv_col, mc_value_col=mc_value_col, json=json_out)
    report = run_verify(
        resolve_dataset_path(dataset, settings.lerobot_home), settings, with_episodes=episodes, plot=plot, repair=repair
    )
    show(settings, report, render.verified, episodes)
    if not report.ok:
        raise typer.Exit(1)
