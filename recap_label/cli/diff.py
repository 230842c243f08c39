"""`recap-label diff`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import AdvColOpt, HumanColOpt, JsonOpt, settings_of
from recap_label.cli.output import show


@app.command("diff")
def diff_cmd(
    ctx: typer.Context,
    a: Annotated[
        str,
        typer.Argument(
            help="Iteration N-1 (folder, local/<name>, or DS@run-0001 for one label run).", show_default=False
        ),
    ],
    b: Annotated[str, typer.Argument(help="Iteration N (same forms).", show_default=False)],
    common: Annotated[
        bool, typer.Option("--common", help="Compare only the rollout episodes (and frames) both have.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Compare copies of different base datasets anyway.")] = False,
    episodes: Annotated[
        bool, typer.Option("--episodes", help="List every episode, not the top 10 that flipped most.")
    ] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            "--plot",
            help="Write a PNG: V of A and B over time for the most-changed episodes, with their label bands.",
            show_default=False,
        ),
    ] = None,
    human_col: HumanColOpt = None,
    adv_col: AdvColOpt = None,
    json_out: JsonOpt = None,
):
    """Compare the labels (and V) of two iterations, or of two label runs of one copy. Only reads.

    \b
    Examples:
      recap-label diff local/vial_v21_vlm_label local/vial_v21_vlm_label_v2
      recap-label diff local/vial_v21_vlm_label@run-0001 local/vial_v21_vlm_label@run-0002
    """
    from recap_label.commands.diff import diff_datasets, plot_diff

    settings = settings_of(ctx, human_col=human_col, adv_col=adv_col, json=json_out)
    if plot is not None:
        from recap_label.plotting import check_plot_destination

        check_plot_destination(plot)  # before the work, as verify does: a wrong name is bad input, not a traceback
    report = diff_datasets(a, b, settings, common=common, force=force)
    if plot is not None:
        plot_diff(report, plot)
        report.notes.append(f"plot written to {plot}")
    show(settings, report, render.diff, None if episodes else 10)
