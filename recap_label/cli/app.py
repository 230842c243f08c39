"""The Typer app, its root options (one `Settings` for every command) and the entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from recap_label import __version__
from recap_label.cli.boundary import Boundary
from recap_label.config import resolve_settings

app = typer.Typer(
    cls=Boundary,
    name="recap-label",
    help=(
        "Stage 5 of RECAP (pi*0.6): copy a LeRobot dataset safely, label every rollout frame "
        "positive/negative from a value model's N-step advantages, verify the result, roll back.\n\n"
        "Typical run:  recap-label copy vial_v21  →  recap-label label local/vial_v21_vlm_label "
        "--checkpoint-dir ckpt/  →  recap-label verify local/vial_v21_vlm_label"
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool):
    if value:
        sys.stdout.write(f"recap-label {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="TOML config file. [default: ./recap-label.toml, else [tool.recap-label] in ./pyproject.toml]",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        Optional[bool], typer.Option("--json/--no-json", help="JSON output for every command.", show_default=False)
    ] = None,
    lerobot_home: Annotated[
        Optional[Path],
        typer.Option(
            "--lerobot-home",
            help="LeRobot cache root. [default: $HF_LEROBOT_HOME or ~/.cache/huggingface/lerobot]",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
):
    """Build the one configuration object every command reads from the context."""
    ctx.obj = resolve_settings(
        config_path=config,
        flags={"json": json_out, "lerobot_home": lerobot_home},
    )


def main() -> None:
    app(prog_name="recap-label")  # the name shell completion registers, also under `python -m recap_label`
