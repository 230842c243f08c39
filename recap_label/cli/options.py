"""The options several commands share (one `Annotated` alias each), and `settings_of`, which lays
a command's flags over the configuration the root callback resolved."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from recap_label.config import Settings

D = Settings.default  # help texts show the built-in defaults from the one place they are set

DatasetArg = Annotated[
    str, typer.Argument(help="Dataset folder, or local/<name> under the LeRobot home.", show_default=False)
]
JsonOpt = Annotated[
    Optional[bool],
    typer.Option("--json/--no-json", help="Machine-readable JSON on stdout instead of tables.", show_default=False),
]
HumanColOpt = Annotated[
    Optional[str],
    typer.Option(
        "--human-col",
        "--human_col",
        help=f"Intervention column (1 = human frame). [default: {D('human_col')}]",
        show_default=False,
    ),
]
AdvColOpt = Annotated[
    Optional[str],
    typer.Option(
        "--adv-col", "--adv_col", help=f"Label column to write/read. [default: {D('adv_col')}]", show_default=False
    ),
]
McValueColOpt = Annotated[
    Optional[str],
    typer.Option(
        "--mc-value-col",
        "--mc_value_col",
        help=f"Monte-Carlo value column the value-model check compares V with. [default: {D('mc_value_col')}]",
        show_default=False,
    ),
]
RewardColOpt = Annotated[
    Optional[str],
    typer.Option(
        "--reward-col", "--reward_col", help=f"Dense reward column. [default: {D('reward_col')}]", show_default=False
    ),
]


def settings_of(ctx: typer.Context, **flags) -> Settings:
    """The resolved configuration with this command's flags applied (None: not given)."""
    base: Settings = ctx.obj
    return base.with_overrides(**flags)
