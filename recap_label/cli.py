"""The `recap-label` command line: parse, resolve configuration, delegate, print.

Commands hold no logic of their own. Every expected failure is a RecapError, turned
here into one `Error: …` line on stderr and its exit code (2 for bad input).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from recap_label import __version__
from recap_label.config import Settings, resolve_settings
from recap_label.errors import RecapError

app = typer.Typer(
    name="recap-label",
    help=(
        "Stage 5 of RECAP (pi*0.6): copy a LeRobot dataset safely, label every rollout frame "
        "positive/negative from a value model's N-step advantages, verify the result, roll back.\n\n"
        "Typical run:  recap-label copy vial_v21  →  recap-label label local/vial_v21_vlm_label "
        "--checkpoint-dir ckpt/  →  recap-label verify local/vial_v21_vlm_label"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# -- shared option aliases -------------------------------------------------------------------

DatasetArg = Annotated[str, typer.Argument(help="Dataset folder, or local/<name> under the LeRobot home.", show_default=False)]
JsonOpt = Annotated[Optional[bool], typer.Option("--json/--no-json", help="Machine-readable JSON on stdout instead of tables.", show_default=False)]
HumanColOpt = Annotated[Optional[str], typer.Option("--human-col", "--human_col", help="Intervention column (1 = human frame). [default: intervention]", show_default=False)]
AdvColOpt = Annotated[Optional[str], typer.Option("--adv-col", "--adv_col", help="Label column to write/read. [default: adv_ind]", show_default=False)]
RewardColOpt = Annotated[Optional[str], typer.Option("--reward-col", "--reward_col", help="Dense reward column. [default: reward_label]", show_default=False)]


def _err(message: str) -> None:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


def guarded(fn):
    """Turn RecapError into one `Error:` line and its exit code; nothing else is caught."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RecapError as exc:
            _err(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted; the dataset is unchanged or will be completed by the next run")
            raise typer.Exit(130) from None

    return wrapper


def settings_of(ctx: typer.Context, **flags) -> Settings:
    base: Settings = ctx.obj
    return base.with_overrides(**flags)


def _stdout():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _version(value: bool):
    if value:
        sys.stdout.write(f"recap-label {__version__}\n")
        raise typer.Exit(0)


@app.callback()
@guarded
def main_callback(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML config file. [default: ./recap-label.toml, else [tool.recap-label] in ./pyproject.toml]", show_default=False)] = None,
    json_out: Annotated[Optional[bool], typer.Option("--json/--no-json", help="JSON output for every command.", show_default=False)] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail (repeatable).")] = 0,
    lerobot_home: Annotated[Optional[Path], typer.Option("--lerobot-home", help="LeRobot cache root. [default: $HF_LEROBOT_HOME or ~/.cache/huggingface/lerobot]", show_default=False)] = None,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
):
    """Build the one configuration object every command reads from the context."""
    ctx.obj = resolve_settings(
        config_path=config,
        flags={"json": json_out, "verbose": verbose or None, "lerobot_home": lerobot_home},
    )


@app.command("config")
@guarded
def config_cmd(ctx: typer.Context, json_out: JsonOpt = None):
    """Show the effective configuration and where each value came from.

    Precedence: flags > RECAP_LABEL_* environment > TOML file > defaults.

    Example:  RECAP_LABEL_HUMAN_COL=is_human recap-label config
    """
    settings = settings_of(ctx, json=json_out)
    if settings.json:
        _print_json({k: {"value": v, "source": s} for k, v, s in settings.as_rows()})
        return
    from rich.table import Table

    t = Table(title="recap-label configuration", title_justify="left")
    for col in ("key", "value", "source"):
        t.add_column(col)
    for row in settings.as_rows():
        t.add_row(*row)
    _stdout().print(t)


@app.command("copy")
@guarded
def copy_cmd(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(help="Source dataset folder or local/<name>. Only ever read.", show_default=False)],
    dest: Annotated[Optional[Path], typer.Argument(help="Destination folder. [default: <src>_vlm_label beside SRC, or the next _vN]", show_default=False)] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not register DEST in the LeRobot cache as local/<dest-name>.")] = False,
    replace_registration: Annotated[bool, typer.Option("--replace-registration", help="Repoint an existing local/<dest-name> cache symlink that points elsewhere.")] = False,
    adv_col: AdvColOpt = None,
    json_out: JsonOpt = None,
):
    """Make a standalone labeled copy of a dataset (the safe `cp -rL` + `ln -sfn`).

    Every symlink is materialized, the copy is built in a hidden temporary folder,
    verified byte for byte, renamed into place, given a lineage record, and registered
    as local/<dest-name> in the LeRobot cache.

    Example:  recap-label copy ~/data/vial_rollout_v1_v21
    """
    from recap_label.copying import copy_dataset
    from recap_label.dataset import resolve_dataset_path

    settings = settings_of(ctx, adv_col=adv_col, json=json_out)
    src_path = resolve_dataset_path(src, settings.lerobot_home)
    result = copy_dataset(
        src, src_path, dest, adv_col=settings.adv_col, lerobot_home=settings.lerobot_home,
        do_register=not no_register, replace_registration=replace_registration,
        progress=None if settings.json else _byte_progress,
    )
    if settings.json:
        _print_json({
            "source": str(result.src), "dest": str(result.dest), "iteration": result.iteration,
            "files": result.files, "bytes": result.bytes,
            "registered": None if result.registered is None else str(result.registered),
            "labels": {"source": result.source_counts, "copy": result.copy_counts},
        })
        return
    from recap_label.report import counts_side_by_side

    out = _stdout()
    out.print(f"copied {result.files} files ({result.bytes / 1e6:,.1f} MB) → {result.dest}  (iteration {result.iteration})")
    out.print("verified: no symlinks, every file byte-identical to its source")
    if result.registered:
        out.print(f"registered: {result.registered} → {result.dest}  (repo_id local/{result.dest.name})")
    out.print(counts_side_by_side("source", result.source_counts, "copy", result.copy_counts))


_PROGRESS_MIN_BYTES = 256 << 20


def _byte_progress(total: int, files: int):
    """A rich bar on bytes for large copies on a terminal; silent otherwise."""
    from rich.console import Console

    console = Console(stderr=True)
    if total < _PROGRESS_MIN_BYTES or not console.is_terminal:
        return lambda n: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    progress = Progress("copy", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)
    task = progress.add_task("copy", total=total)
    progress.start()
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        progress.update(task, advance=n)
        if done[0] >= total:
            progress.stop()

    return advance


@app.command("verify")
@guarded
def verify_cmd(
    ctx: typer.Context,
    dataset: DatasetArg,
    episodes: Annotated[bool, typer.Option("--episodes", help="Add a per-episode table.")] = False,
    human_col: HumanColOpt = None,
    adv_col: AdvColOpt = None,
    json_out: JsonOpt = None,
):
    """Print the adv_ind breakdown by intervention and check the labeled copy's invariants.

    Exit 0 when every invariant holds, 1 when one fails, 2 on bad input.

    Example:  recap-label verify local/vial_rollout_v1_v21_vlm_label --episodes
    """
    from recap_label.dataset import LeRobotDataset, resolve_dataset_path
    from recap_label.verify import verify_dataset

    settings = settings_of(ctx, human_col=human_col, adv_col=adv_col, json=json_out)
    ds = LeRobotDataset.open(resolve_dataset_path(dataset, settings.lerobot_home))
    report = verify_dataset(ds, settings, with_episodes=episodes)
    if settings.json:
        _print_json(report.to_json(episodes))
    else:
        _render_verify(report, episodes)
    if not report.ok:
        raise typer.Exit(1)


def _render_verify(report, episodes: bool) -> None:
    from rich.table import Table

    from recap_label.report import breakdown_table, episodes_table

    out = _stdout()
    out.print(f"dataset {report.dataset}")
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(breakdown_table(report.breakdown))
    if episodes:
        out.print(episodes_table(report.breakdown))
    t = Table(title="invariants", title_justify="left")
    for col in ("check", "result", "detail"):
        t.add_column(col)
    for c in report.checks:
        t.add_row(c.name, {"pass": "PASS", "fail": "FAIL", "skip": "skip"}[c.status], c.detail)
    out.print(t)
    out.print("all invariants hold" if report.ok else "INVARIANT FAILED")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
