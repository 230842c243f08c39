"""`recap-label view`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import AdvColOpt, HumanColOpt, JsonOpt, McValueColOpt, settings_of
from recap_label.cli.output import show


@app.command("view")
def view_cmd(
    ctx: typer.Context,
    dataset: Annotated[
        str,
        typer.Argument(
            help="Labeled dataset (folder, local/<name>, or DS@run-0001 for one label run).", show_default=False
        ),
    ],
    episodes: Annotated[
        Optional[str],
        typer.Option(
            "--episodes", help="Episodes by index: 3,7 or 2-5. [default: the first rollout episode]", show_default=False
        ),
    ] = None,
    worst: Annotated[
        Optional[int],
        typer.Option(
            "--worst",
            help="The N episodes to look at first (most flips against --compare, tail pile-up, flat V, lowest "
            "Spearman), each with why.",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        Optional[str],
        typer.Option(
            "--compare",
            help="Also show another iteration's (or DS@run-NNNN's) V and labels, and the flips.",
            show_default=False,
        ),
    ] = None,
    cameras: Annotated[
        Optional[str],
        typer.Option(
            "--cameras",
            help="Cameras to show, comma-separated (full key or last part). [default: all]",
            show_default=False,
        ),
    ] = None,
    mp4: Annotated[
        Optional[str],
        typer.Option(
            "--mp4", help="Write an H.264 MP4 of the chosen episodes; DIR/ for one per episode.", show_default=False
        ),
    ] = None,
    rrd: Annotated[
        Optional[str],
        typer.Option(
            "--rrd",
            help="Write a Rerun recording (.rrd, one episode); DIR/ for one per episode. Needs the `view` extra.",
            show_default=False,
        ),
    ] = None,
    spawn: Annotated[bool, typer.Option("--spawn", help="Open the Rerun viewer with the recordings.")] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve Rerun's web viewer on --port and print its URL; Ctrl-C stops it.")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="--serve: the web viewer's port.")] = 9090,
    grpc_port: Annotated[
        int, typer.Option("--grpc-port", help="--serve: the port the recordings are served on.")
    ] = 9876,
    human_col: HumanColOpt = None,
    adv_col: AdvColOpt = None,
    mc_value_col: McValueColOpt = None,
    json_out: JsonOpt = None,
):
    """Watch the labels: the cameras with V, A, the threshold and adv_ind on one timeline. Only reads.

    \b
    Examples:
      recap-label view local/vial_v21_vlm_label --worst 3 --mp4 review/
      recap-label view local/vial_v21_vlm_label_v2 --compare local/vial_v21_vlm_label --episodes 4 --rrd ep4.rrd
    """
    from recap_label.commands.view import run_view

    settings = settings_of(ctx, human_col=human_col, adv_col=adv_col, mc_value_col=mc_value_col, json=json_out)
    # shown once the files are written, before a --serve waits for Ctrl-C
    run_view(
        dataset,
        settings,
        episodes=episodes,
        worst=worst,
        compare=compare,
        cameras=cameras,
        mp4=mp4,
        rrd=rrd,
        spawn=spawn,
        serve=(port, grpc_port) if serve else None,
        on_ready=lambda result: show(settings, result, render.viewed),
    )
