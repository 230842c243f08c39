"""The `recap-label` command line: parse, resolve configuration, delegate, print.

Commands hold no logic of their own. Every expected failure is a RecapError, turned
here into one `Error: …` line on stderr and its exit code (2 for bad input).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from recap_label import __version__
from recap_label.config import Settings, resolve_settings
from recap_label.errors import RecapError

D = Settings.default  # help texts show the built-in defaults from the one place they are set
# the UsageError of the Click that Typer parses with (its own vendored copy since Typer 0.26)
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _JsonUsageErrors(TyperGroup):
    """A usage error (a flag or value Click rejects before a command runs, e.g. `--lookahead 1e30`)
    is, under --json, also the JSON error object on stdout, like every other error."""

    def parse_args(self, ctx, args):
        ctx.meta["recap_label.args"] = list(args)  # every token, the command's own flags included
        try:
            return super().parse_args(ctx, args)
        except _UsageError as exc:
            self._json_error(ctx, exc)
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _UsageError as exc:
            self._json_error(ctx, exc)
            raise

    @staticmethod
    def _json_error(ctx, exc) -> None:
        given = [a for a in ctx.meta.get("recap_label.args", []) if a in ("--json", "--no-json")]
        if given[-1] == "--json" if given else isinstance(ctx.obj, Settings) and ctx.obj.json:
            _print_json({"error": exc.format_message(), "exit_code": exc.exit_code, "kind": "usage_error"})


app = typer.Typer(
    cls=_JsonUsageErrors,
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

# -- shared option aliases -------------------------------------------------------------------

DatasetArg = Annotated[str, typer.Argument(help="Dataset folder, or local/<name> under the LeRobot home.", show_default=False)]
JsonOpt = Annotated[Optional[bool], typer.Option("--json/--no-json", help="Machine-readable JSON on stdout instead of tables.", show_default=False)]
HumanColOpt = Annotated[Optional[str], typer.Option("--human-col", "--human_col", help=f"Intervention column (1 = human frame). [default: {D('human_col')}]", show_default=False)]
AdvColOpt = Annotated[Optional[str], typer.Option("--adv-col", "--adv_col", help=f"Label column to write/read. [default: {D('adv_col')}]", show_default=False)]
McValueColOpt = Annotated[Optional[str], typer.Option("--mc-value-col", "--mc_value_col", help=f"Monte-Carlo value column the value-model check compares V with. [default: {D('mc_value_col')}]", show_default=False)]
RewardColOpt = Annotated[Optional[str], typer.Option("--reward-col", "--reward_col", help=f"Dense reward column. [default: {D('reward_col')}]", show_default=False)]


def _err(message: str) -> None:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


def guarded(fn):
    """Turn RecapError into one `Error:` line and its exit code; nothing else is caught. Under
    --json the same error is also a JSON object on stdout."""

    def fail(message: str, code: int, kind: str, kwargs: dict):
        _err(message)
        if _json_wanted(kwargs):
            _print_json({"error": message, "exit_code": code, "kind": kind})
        raise typer.Exit(code) from None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RecapError as exc:
            fail(exc.message, exc.exit_code, _error_kind(exc), kwargs)
        except OSError as exc:  # disk full, permissions, … outside the places that say more
            from recap_label.store.fsutil import os_error_message

            fail(os_error_message(exc, f"running `recap-label {fn.__name__.removesuffix('_cmd')}`"), 2, "os_error", kwargs)
        except KeyboardInterrupt:
            fail("interrupted; the dataset is unchanged or will be completed by the next run", 130, "interrupted", kwargs)

    return wrapper


def _error_kind(exc: RecapError) -> str:
    """DatasetError -> "dataset_error": the exception class, for scripts that branch on it."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _json_wanted(kwargs: dict) -> bool:
    """--json given to this command, or resolved for every command (flag, environment, file)."""
    if kwargs.get("json_out") is not None:
        return bool(kwargs["json_out"])
    ctx = kwargs.get("ctx")
    if isinstance(getattr(ctx, "obj", None), Settings):
        return ctx.obj.json
    return False


def settings_of(ctx: typer.Context, **flags) -> Settings:
    base: Settings = ctx.obj
    return base.with_overrides(**flags)


def _stdout():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)  # plain lines never broken: a path stays one piece


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
    lerobot_home: Annotated[Optional[Path], typer.Option("--lerobot-home", help="LeRobot cache root. [default: $HF_LEROBOT_HOME or ~/.cache/huggingface/lerobot]", show_default=False)] = None,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
):
    """Build the one configuration object every command reads from the context."""
    ctx.obj = resolve_settings(
        config_path=config,
        flags={"json": json_out, "lerobot_home": lerobot_home},
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

    out, rows = _stdout(), settings.as_rows()
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    if sum(widths) + 10 > out.width:
        # too narrow for a table without cutting paths: one TOML-style line per key, never cut
        out.print("recap-label configuration (key = value  # source)")
        for key, _, source in rows:
            value = getattr(settings, key)
            shown = json.dumps(value if isinstance(value, (bool, int, float)) else "" if value is None else str(value))
            out.print(f"{key} = {shown}  # {source}")
        return
    t = Table(title="recap-label configuration", title_justify="left")
    for col in ("key", "value", "source"):
        t.add_column(col, no_wrap=True)
    for row in rows:
        t.add_row(*row)
    out.print(t)


@app.command("copy")
@guarded
def copy_cmd(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(help="Source dataset folder or local/<name>. Only ever read.", show_default=False)],
    dest: Annotated[Optional[Path], typer.Argument(help="Destination folder. [default: <src>_vlm_label beside SRC, or the next _vN]", show_default=False)] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not register DEST in the LeRobot cache as local/<dest-name>.")] = False,
    replace_registration: Annotated[bool, typer.Option("--replace-registration", help="Repoint an existing local/<dest-name> cache symlink that points elsewhere.")] = False,
    from_original: Annotated[bool, typer.Option("--from-original", help="Copy an original that already has iteration copies anyway (a new line: no parent, the original's labels).")] = False,
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
    bar = _ByteProgress()
    try:
        result = copy_dataset(
            src, src_path, dest, adv_col=settings.adv_col, lerobot_home=settings.lerobot_home,
            do_register=not no_register, replace_registration=replace_registration, from_original=from_original,
            progress=None if settings.json else bar,
        )
    finally:
        bar.close()  # also on Ctrl-C or an error: the next line must not land on the bar
    if settings.json:
        _print_json({
            "source": str(result.src), "dest": str(result.dest), "iteration": result.iteration,
            "files": result.files, "bytes": result.bytes,
            "registered": None if result.registered is None else str(result.registered),
            "labels": {"source": result.source_counts, "copy": result.copy_counts}, "notes": result.notes,
        })
        return
    from recap_label.report import counts_side_by_side

    out = _stdout()
    for note in result.notes:
        out.print(f"note: {note}")
    if result.finished_interrupted:
        out.print(f"note: finished an interrupted copy of {result.src}: {result.dest} was complete; its registration is done now")
    out.print(f"copied {result.files} files ({result.bytes / 1e6:,.1f} MB) → {result.dest}  (iteration {result.iteration})")
    out.print("verified: no symlinks, every file byte-identical to its source")
    if result.registered:
        out.print(f"registered: {result.registered} → {result.dest}  (repo_id local/{result.dest.name})")
    out.print(counts_side_by_side("source", result.source_counts, "copy", result.copy_counts))


_PROGRESS_MIN_BYTES = 256 << 20


class _ByteProgress:
    """A rich bar on bytes for large copies on a terminal; silent otherwise. close() removes it."""

    def __init__(self):
        self.progress = None

    def __call__(self, total: int, files: int):
        from rich.console import Console

        console = Console(stderr=True)
        if total < _PROGRESS_MIN_BYTES or not console.is_terminal:
            return lambda n: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        self.progress = Progress("copy", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)
        task = self.progress.add_task("copy", total=total)
        self.progress.start()
        return lambda n: self.progress.update(task, advance=n)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@app.command("verify")
@guarded
def verify_cmd(
    ctx: typer.Context,
    dataset: DatasetArg,
    episodes: Annotated[bool, typer.Option("--episodes", help="Add a per-episode table.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG: advantage histogram with the threshold, V over time for a few episodes.", show_default=False)] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Finish an interrupted commit first (complete or undo it); without it verify only reads.")] = False,
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
    report = run_verify(resolve_dataset_path(dataset, settings.lerobot_home), settings, with_episodes=episodes, plot=plot, repair=repair)
    if settings.json:
        _print_json(report.to_json(episodes))
    else:
        _render_verify(report, episodes)
    if not report.ok:
        raise typer.Exit(1)


def _render_verify(report, episodes: bool) -> None:
    from rich.table import Table

    from recap_label.report import breakdown_table, episodes_table, summary_line

    out = _stdout()
    out.print(f"dataset {report.dataset}")
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(breakdown_table(report.breakdown))
    out.print(summary_line(report.breakdown))
    if episodes:
        out.print(episodes_table(report.breakdown))
    _render_value_model(out, report.value_model)
    t = Table(title="invariants", title_justify="left")
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail", overflow="fold")  # a long path is folded onto the next line, never cut with "…"
    for c in report.checks:
        t.add_row(c.name, {"pass": "PASS", "fail": "FAIL", "skip": "skip", "warn": "WARN"}[c.status], c.detail)
    out.print(t)
    warned = sum(c.status == "warn" for c in report.checks)
    out.print(("all invariants hold" + (f" ({warned} warning{'s' if warned > 1 else ''})" if warned else "")) if report.ok else "INVARIANT FAILED")



def _render_value_model(out, section) -> None:
    if section is None:
        return
    from recap_label.report import value_model_table

    out.print(value_model_table(section))
    for note in section.notes:
        out.print(f"note: {note}")
    for w in section.warnings:
        out.print(f"warning: value model: {w}")


# -- label ----------------------------------------------------------------------------------

LABEL_HELP = """Label every frame of every rollout episode positive/negative from N-step advantages.

A_t = sum(r[t:min(t+N,T)]) + (V[t+N] if t+N<T else 0) - V[t]; one global
numpy.percentile(A of autonomous rollout frames, 100 - 100*ratio) threshold;
intervention frames positive; autonomous frames positive iff A >= threshold;
demo episodes (all intervention = 1) untouched.

V comes from exactly one of: --checkpoint-dir (the value model), --values FILE
(parquet: episode_index, frame_index, value), --value-column NAME.
Reference flags work in their underscore spelling too (--data_dir, --top_percent, ...).

Example:  recap-label label local/vial_v21_vlm_label --checkpoint-dir ckpt/value_model --tokenizer-path tokenizer.model
"""


@app.command("label", help=LABEL_HELP)
@guarded
def label_cmd(
    ctx: typer.Context,
    dataset: Annotated[Optional[str], typer.Argument(help="Dataset folder or local/<name> (a copy made by `recap-label copy`).", show_default=False)] = None,
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", "--data_dir", help="Same as DATASET (the reference script's flag).", show_default=False)] = None,
    checkpoint_dir: Annotated[Optional[Path], typer.Option("--checkpoint-dir", "--checkpoint_dir", help="Value source: a pistar Stage-4 checkpoint folder (step_XXXXXXXX/ or one step).", show_default=False)] = None,
    checkpoint_step: Annotated[Optional[str], typer.Option("--checkpoint-step", "--checkpoint_name", help="Which step (e.g. 5000 or step_00005000). [default: latest complete]", show_default=False)] = None,
    use_ema: Annotated[bool, typer.Option("--use-ema/--no-use-ema", "--use_ema/--no-use_ema", help="Use the EMA weights.")] = True,
    tokenizer_path: Annotated[Optional[Path], typer.Option("--tokenizer-path", "--tokenizer_path", help="SentencePiece tokenizer.model of the value model.", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "--batch_size", help="Inference batch size. [default: 64 on CUDA, 8 on CPU]", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help=f"auto, cpu, cuda or cuda:N. [default: {D('device')}]", show_default=False)] = None,
    num_workers: Annotated[Optional[int], typer.Option("--num-workers", "--num_workers", help="Decode workers. [default: 0 on <= 2 cores, else min(8, cores-1)]", show_default=False)] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model; on CUDA with CUDA graphs (mode reduce-overhead: every batch has one shape). Checked up front: exit 2 without a working compiler.")] = False,
    precision: Annotated[Optional[str], typer.Option("--precision", help=f"Numerics. tf32: SigLIP encoder bf16, the rest fp32 with TF32 matmuls (pistar's JAX forward on a GPU; CUDA only); bf16: SigLIP encoder bf16, the rest strict fp32; fp32: all strict fp32 (the CPU reference). auto: tf32 on CUDA, fp32 on CPU. Fidelity per mode: README 'GPU'. [default: {D('precision')}]", show_default=False)] = None,
    values: Annotated[Optional[Path], typer.Option("--values", help="Value source: parquet file with episode_index, frame_index, value.", show_default=False)] = None,
    value_column: Annotated[Optional[str], typer.Option("--value-column", "--value_column", help="Value source: a float column of the dataset (e.g. value_label).", show_default=False)] = None,
    values_column: Annotated[Optional[str], typer.Option("--values-column", "--values_column", help="With --values: the file's column holding V. [default: value]", show_default=False)] = None,
    lookahead: Annotated[Optional[int], typer.Option("--lookahead", help=f"N of the N-step advantage, in frames. [default: {D('lookahead')}]", show_default=False)] = None,
    positive_ratio: Annotated[Optional[float], typer.Option("--positive-ratio", "--positive_ratio", help=f"Share of autonomous rollout frames labeled positive, in (0, 1]. [default: {D('positive_ratio')}]", show_default=False)] = None,
    top_percent: Annotated[Optional[float], typer.Option("--top-percent", "--top_percent", help="The same knob in percent (the reference's flag).", show_default=False)] = None,
    tail_bootstrap: Annotated[Optional[str], typer.Option("--tail-bootstrap", "--tail_bootstrap", help=f"Past the episode end bootstrap with 'zero' (reference code) or 'last' = V[T-1] (reference docs). [default: {D('tail_bootstrap')}]", show_default=False)] = None,
    threshold_scope: Annotated[Optional[str], typer.Option("--threshold-scope", "--threshold_scope", help=f"'global' (reference) or 'task' (one threshold per task, as in the paper). [default: {D('threshold_scope')}]", show_default=False)] = None,
    human_col: HumanColOpt = None,
    adv_col: AdvColOpt = None,
    reward_col: RewardColOpt = None,
    mc_value_col: McValueColOpt = None,
    base_image_col: Annotated[Optional[str], typer.Option("--base-image-col", "--base_image_col", help="Base camera column (model slot base_0_rgb).", show_default=False)] = None,
    wrist_image_col: Annotated[Optional[str], typer.Option("--wrist-image-col", "--wrist_image_col", help="Wrist camera column (slot wrist_0_rgb).", show_default=False)] = None,
    right_wrist_image_col: Annotated[Optional[str], typer.Option("--right-wrist-image-col", "--right_wrist_image_col", help="Optional third camera (slot right_wrist_0_rgb; pistar's critic was trained on two).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and report what would change; write nothing.")] = False,
    score_only: Annotated[bool, typer.Option("--score-only", help="Only score (infer V into the value parts); write no labels. With --shard: this process's share.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: with --score-only, score shard I (1-based) of N, balanced by frames; the same split on any machine.", show_default=False)] = None,
    episode_shard_index: Annotated[Optional[int], typer.Option("--episode_shard_index", "--episode-shard-index", help="pistar-world's spelling of --shard: the shard's 0-based index (with --episode_num_shards).", show_default=False)] = None,
    episode_num_shards: Annotated[Optional[int], typer.Option("--episode_num_shards", "--episode-num-shards", help="pistar-world's spelling of --shard: the number of shards.", show_default=False)] = None,
    recompute: Annotated[bool, typer.Option("--recompute", help="Ignore cached values and run inference again.")] = False,
    allow_original: Annotated[bool, typer.Option("--allow-original", help="Allow labeling a dataset that is not a recap-label copy.")] = False,
    json_out: JsonOpt = None,
):
    from recap_label.commands.label import run_label
    from recap_label.errors import BadInput
    from recap_label.lerobot.dataset import resolve_dataset_path
    from recap_label.rule import RuleSettings, resolve_ratio
    from recap_label.values.sources import value_source_from_options

    if top_percent is not None and 0 < top_percent < 1 and positive_ratio is None:  # 0 and below are refused, not warned
        from recap_label.errors import warn

        warn(f"--top-percent {top_percent:g} labels {top_percent:g} % of the autonomous frames positive; "
             f"for {100 * top_percent:g} % pass --top-percent {100 * top_percent:g} (or --positive-ratio {top_percent:g})")
    if dataset and data_dir and dataset != data_dir:
        raise BadInput("give the dataset once: as DATASET or as --data-dir")
    target = dataset or data_dir
    if not target:
        raise BadInput("no dataset given; pass DATASET (a folder or local/<name>)")
    settings = settings_of(
        ctx, human_col=human_col, adv_col=adv_col, reward_col=reward_col, mc_value_col=mc_value_col, json=json_out,
        base_image_col=base_image_col, wrist_image_col=wrist_image_col, right_wrist_image_col=right_wrist_image_col,
        lookahead=lookahead, tail_bootstrap=tail_bootstrap,
        positive_ratio=None if positive_ratio is None and top_percent is None else resolve_ratio(positive_ratio, top_percent),
        threshold_scope=threshold_scope, checkpoint_dir=checkpoint_dir, checkpoint_step=checkpoint_step,
        tokenizer_path=tokenizer_path, device=device, batch_size=batch_size, num_workers=num_workers, precision=precision,
    )
    rule = RuleSettings(settings.lookahead, settings.positive_ratio, settings.tail_bootstrap, settings.threshold_scope)
    root = resolve_dataset_path(target, settings.lerobot_home)
    shard_spec = parse_shard(shard, episode_shard_index, episode_num_shards)
    if (score_only or shard_spec is not None) and (values is not None or value_column is not None):
        flag = "--shard" if shard_spec is not None else "--score-only"
        raise BadInput(f"{flag} needs --checkpoint-dir: values from --values or --value-column have nothing to score")
    if shard_spec is not None and not score_only:
        raise BadInput("--shard needs --score-only: each shard only scores its part; the labels are written once, by a final `label` without --shard")
    if score_only and dry_run:
        raise BadInput("--score-only and --dry-run do not go together: --score-only writes value parts, --dry-run writes nothing; run them one after the other")
    source = value_source_from_options(settings, values_file=values, value_column=value_column, use_ema=use_ema, compile_model=compile_model,
                                       values_column=values_column)
    if score_only:
        from recap_label.commands.label import score_only as run_scoring

        scored = run_scoring(root, settings, source, shard=shard_spec, recompute=recompute)
        if settings.json:
            _print_json(scored.to_json())
        else:
            _render_scoring(scored)
        return
    outcome = run_label(root, settings, rule, source, dry_run=dry_run, recompute=recompute, allow_original=allow_original)
    if outcome is None:  # a non-zero torchrun rank: rank 0 reports
        return
    if settings.json:
        _print_json(outcome.to_json())
        return
    _render_label(outcome)


def parse_shard(shard: str | None, index0: int | None, count: int | None) -> tuple[int, int] | None:
    """--shard I/N (1-based), or pistar-world's --episode_shard_index K --episode_num_shards N (0-based)."""
    from recap_label.errors import BadInput

    spec = None
    if shard is not None:
        import re

        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise BadInput(f"--shard must be I/N with whole numbers, e.g. --shard 3/16, got {shard!r}")
        spec = (int(m.group(1)), int(m.group(2)))
    if index0 is not None or count is not None:
        if index0 is None or count is None:
            raise BadInput("--episode_shard_index and --episode_num_shards go together; or use --shard I/N")
        old = (index0 + 1, count)
        if spec is not None and spec != old:
            raise BadInput(f"--shard {shard} and --episode_shard_index {index0} --episode_num_shards {count} disagree; give one of them")
        spec = old
    if spec is not None:
        i, n = spec
        if n < 1 or not 1 <= i <= n:
            raise BadInput(f"--shard {i}/{n}: I must be between 1 and N (N >= 1); shards are numbered 1..N")
    return spec


def _render_scoring(s) -> None:
    out = _stdout()
    who = "scored" if s.shard is None else f"shard {s.shard[0]}/{s.shard[1]}: scored"
    out.print(f"{who} {s.inferred} of {s.episodes} episode(s) ({s.frames:,} frames; {s.reused} already done) in {s.seconds:.1f} s")
    out.print(f"value parts: {s.parts}")
    if s.dropped:
        out.print(f"note: {len(s.dropped)} damaged part(s) scored again (episodes {', '.join(map(str, s.dropped))})")
    if s.missing_shards:
        out.print(f"shards still to finish: {', '.join(map(str, s.missing_shards))}")
    elif s.shard is not None:
        out.print("every shard is done: run `recap-label label` without --shard to write the labels")


def _render_label(o) -> None:
    from rich.table import Table

    from recap_label.report import breakdown_table, summary_line

    out = _stdout()
    for note in o.notes:
        out.print(f"note: {note}")
    head = "DRY RUN — nothing written" if o.dry_run else f"{o.run_id}: {o.files_rewritten} data file(s) rewritten"
    out.print(f"{head} · {o.dataset}")
    out.print(f"values from: {o.values_from}")
    for name, thr in o.thresholds.items():
        shown = "n/a (no autonomous frames)" if thr is None else f"{thr:.6g}"
        out.print(f"threshold ({name}, {o.pool_sizes[name]:,} autonomous frames): {shown}")
    out.print(breakdown_table(o.breakdown, title="adv_ind after labeling" if not o.dry_run else "adv_ind if labeled"))
    out.print(summary_line(o.breakdown))
    if o.transitions:
        out.print("label transitions (rollout frames)")  # a line of its own: a narrow table's title would wrap
        t = Table()
        t.add_column("from -> to")
        t.add_column("frames", justify="right")
        for k, v in o.transitions.items():
            t.add_row(k, f"{v:,}")
        out.print(t)
    else:
        out.print("no label changes")
    if len(o.share_per_task) > 1:
        out.print("positive share per task: " + ", ".join(f"task {k}: {100 * v:.1f} %" for k, v in o.share_per_task.items() if v is not None))
    for w in o.warnings:
        out.print(f"warning: {w}")
    _render_value_model(out, o.value_model)
    p = o.performance
    if p:
        step = "" if p.get("checkpoint_step") is None else f"step {p['checkpoint_step']}, "
        out.print(f"inference: {p['frames']:,} frames at {p['frames_per_s']:,.1f} frames/s on {p.get('device')}, {p.get('precision')}")
        out.print(f"  batch {p.get('batch_size')}, {p.get('num_workers')} workers · checkpoint {step}{'EMA' if p.get('ema') else 'raw params'}")
        split = " · ".join(f"{k} {v:.1f} s" for k, v in p["wall_s"].items() if k != "inference" and v is not None)
        out.print(f"time: {split} · total {o.timings.get('total', 0):.1f} s")
    else:
        out.print(f"time: {o.timings.get('total', 0):.2f} s")


# -- rollback -------------------------------------------------------------------------------


@app.command("rollback")
@guarded
def rollback_cmd(
    ctx: typer.Context,
    dataset: DatasetArg,
    list_runs: Annotated[bool, typer.Option("--list", help="List the recorded runs and exit.")] = False,
    to: Annotated[Optional[str], typer.Option("--to", help="Roll back every label run after RUN ('copy' = all of them).", show_default=False)] = None,
    iteration: Annotated[bool, typer.Option("--iteration", help="Retire this iteration copy: unregister it so local/<base>_vlm_label_active resolves to the prior iteration.")] = False,
    delete: Annotated[bool, typer.Option("--delete", help="With --iteration: also delete the copy's folder.")] = False,
    json_out: JsonOpt = None,
):
    """Undo the last label run of a copy (exact prior labels), or retire an iteration copy.

    \b
    Examples:
      recap-label rollback local/vial_v21_vlm_label_v3              # undo the last label run
      recap-label rollback local/vial_v21_vlm_label_v3 --iteration  # back to _v2
    """
    from recap_label.commands.rollback import list_runs as runs_of, retire_iteration, rollback_runs
    from recap_label.errors import BadInput
    from recap_label.lerobot.dataset import resolve_dataset_path

    settings = settings_of(ctx, json=json_out)
    if delete and not iteration:
        raise BadInput("--delete only applies with --iteration")
    if iteration:  # resolved inside: an interrupted retirement may have removed local/<name> already
        res = retire_iteration(dataset, settings, delete)
        if settings.json:
            _print_json(res.to_json())
            return
        out = _stdout()
        out.print(f"retired {res.dataset}" + (" (deleted)" if res.deleted else " (folder kept)"))
        for name in res.unregistered:
            out.print(f"unregistered {name}")
        for note in res.notes:
            out.print(f"note: {note}")
        if res.active_now:
            out.print(f"active iteration now: {res.active_now}")
        return
    root = resolve_dataset_path(dataset, settings.lerobot_home)
    if list_runs:
        from recap_label.lerobot.dataset import LeRobotDataset

        runs = runs_of(LeRobotDataset.open(root).root)
        standing = [r.id for r in runs if r.kind == "label" and not r.rolled_back]
        on_disk = standing[-1] if standing else None  # only the newest standing run's labels are in the files
        if settings.json:
            _print_json([{**r.to_json(), **({"labels_on_disk": r.id == on_disk} if r.kind == "label" else {})} for r in runs])
            return
        if not runs:
            _stdout().print(f"no runs recorded for {root}: no label run yet, its labels are those it was copied with")
            return
        from rich.table import Table

        _stdout().print(f"runs of {root}")
        t = Table(box=None, padding=(0, 1, 0, 0))  # no rules: a whole row fits 80 columns
        t.add_column("run", no_wrap=True)
        t.add_column("time (UTC)", no_wrap=True)  # a whole timestamp, never cut
        for col in ("kind", "values", "share"):
            t.add_column(col, no_wrap=True)
        t.add_column("status", overflow="fold")
        for r in runs:
            if r.kind == "rollback":
                t.add_row(r.id, _utc(r.time), r.kind, "", "", "undid " + ", ".join(r.undid))
                continue
            share = "" if r.share is None else f"{100 * r.share:.2f} %"
            if r.rolled_back:
                status = f"undone by {r.rolled_back}"
            elif r.id == on_disk:
                status = "active"
            else:
                status = f"replaced by {standing[standing.index(r.id) + 1]}"  # its labels are no longer on disk
            t.add_row(r.id, _utc(r.time), r.kind, r.value_source.get("source", ""), share, status)
        _stdout().print(t)
        return
    res = rollback_runs(root, to, settings.lerobot_home)
    if settings.json:
        _print_json(res.to_json())
        return
    out = _stdout()
    for note in res.notes:
        out.print(f"note: {note}")
    out.print(f"rolled back {', '.join(res.undone)}: {res.files_restored} data file(s) restored to their prior labels")


# -- iterations: the loop of copies, the _active alias, re-registering ------------------------


@app.command("iterations")
@guarded
def iterations_cmd(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="The original, any of its iteration copies, or local/<name>.", show_default=False)],
    json_out: JsonOpt = None,
):
    """One row per iteration copy of a base: path, parent, runs, last run, active, registered.

    Example:  recap-label iterations local/vial_rollout_v1_v21_vlm_label_active
    """
    from recap_label.commands.iterations import list_iterations

    settings = settings_of(ctx, json=json_out)
    its = list_iterations(dataset, settings.lerobot_home)
    if settings.json:
        _print_json(its.to_json())
        return
    if not its.rows:  # a sentence, not an empty table
        _stdout().print(f"{its.base} has no iteration copies yet; `recap-label copy {dataset}` makes the first")
        return
    from rich.table import Table

    from recap_label.store.lineage import split_iteration_name

    out = _stdout()
    out.print(f"iterations of {its.base}")
    t = Table(box=None, padding=(0, 1, 0, 0))  # no rules: a row fits 80 columns; a long name folds, numbers never do
    for col in ("", "name", "parent", "runs", "share", "threshold", "step", "state"):
        t.add_column(col, justify="right" if col in ("runs", "share", "threshold", "step") else "left",
                     no_wrap=col != "name", overflow="fold" if col == "name" else "ellipsis")
    for r in its.rows:
        state = "missing" if r.missing else "retired" if r.retired else "registered" if r.registered else "unregistered"
        parent = "-" if r.parent is None else f"v{split_iteration_name(r.parent)[1]}"
        t.add_row("*" if r.active else "", r.name, parent, str(r.runs),
                  "-" if r.share is None else f"{100 * r.share:.1f} %", "-" if r.threshold is None else f"{r.threshold:.4g}",
                  "-" if r.checkpoint_step is None else str(r.checkpoint_step), state)
    out.print(t)
    for r in its.rows:
        out.print(f"{r.name}: {r.path}")
    out.print(f"* = {its.alias} → {its.active}" if its.active else f"{its.alias} is not set (no live labeled iteration is active; `recap-label activate <copy>` sets it)")


@app.command("activate")
@guarded
def activate_cmd(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="A labeled iteration copy (folder or local/<name>).", show_default=False)],
    json_out: JsonOpt = None,
):
    """Point local/<base>_vlm_label_active at a labeled iteration copy (the one Stage 6 trains on).

    Example:  recap-label activate local/vial_rollout_v1_v21_vlm_label
    """
    import os

    from recap_label.commands.iterations import activate

    settings = settings_of(ctx, json=json_out)
    alias = activate(dataset, settings.lerobot_home)
    if settings.json:
        _print_json({"alias": f"local/{alias.name}", "target": os.readlink(alias)})
        return
    _stdout().print(f"local/{alias.name} → {os.readlink(alias)}")


@app.command("register")
@guarded
def register_cmd(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The copy's folder, where it is now.", show_default=False)],
    replace_registration: Annotated[bool, typer.Option("--replace-registration", help="Repoint local/<name> even if it points at another existing folder.")] = False,
    json_out: JsonOpt = None,
):
    """Re-register a moved (or --no-register) iteration copy as local/<name>; nothing is copied.

    Example:  recap-label register /mnt/big/vial_rollout_v1_v21_vlm_label_v2
    """
    from recap_label.commands.iterations import register_copy

    settings = settings_of(ctx, json=json_out)
    res = register_copy(folder, settings.lerobot_home, replace_registration)
    if settings.json:
        _print_json({"entry": str(res.entry), "dest": str(res.dest), "before": res.before, "alias_moved": res.alias_moved})
        return
    out = _stdout()
    out.print(f"registered: {res.entry} → {res.dest}" + (f"  (was {res.before})" if res.before and res.before != str(res.dest) else ""))
    if res.alias_moved:
        out.print(f"the _active alias followed it to {res.dest}")


@app.command("diff")
@guarded
def diff_cmd(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Iteration N-1 (folder, local/<name>, or DS@run-0001 for one label run).", show_default=False)],
    b: Annotated[str, typer.Argument(help="Iteration N (same forms).", show_default=False)],
    common: Annotated[bool, typer.Option("--common", help="Compare only the rollout episodes (and frames) both have.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Compare copies of different base datasets anyway.")] = False,
    episodes: Annotated[bool, typer.Option("--episodes", help="List every episode, not the top 10 that flipped most.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG: V of A and B over time for the most-changed episodes, with their label bands.", show_default=False)] = None,
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
    top = None if episodes else 10
    if settings.json:
        _print_json(report.to_json(top))
        return
    from recap_label.report import diff_tables

    out = _stdout()
    out.print(f"A = {report.a_path} ({report.a})")
    out.print(f"B = {report.b_path} ({report.b})")
    for t in diff_tables(report, top):
        out.print(t)
    for note in report.notes:
        out.print(f"note: {note}")


@app.command("view")
@guarded
def view_cmd(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Labeled dataset (folder, local/<name>, or DS@run-0001 for one label run).", show_default=False)],
    episodes: Annotated[Optional[str], typer.Option("--episodes", help="Episodes by index: 3,7 or 2-5. [default: the first rollout episode]", show_default=False)] = None,
    worst: Annotated[Optional[int], typer.Option("--worst", help="The N episodes to look at first (most flips against --compare, tail pile-up, flat V, lowest Spearman), each with why.", show_default=False)] = None,
    compare: Annotated[Optional[str], typer.Option("--compare", help="Also show another iteration's (or DS@run-NNNN's) V and labels, and the flips.", show_default=False)] = None,
    cameras: Annotated[Optional[str], typer.Option("--cameras", help="Cameras to show, comma-separated (full key or last part). [default: all]", show_default=False)] = None,
    mp4: Annotated[Optional[str], typer.Option("--mp4", help="Write an H.264 MP4 of the chosen episodes; DIR/ for one per episode.", show_default=False)] = None,
    rrd: Annotated[Optional[str], typer.Option("--rrd", help="Write a Rerun recording (.rrd, one episode); DIR/ for one per episode. Needs the `view` extra.", show_default=False)] = None,
    spawn: Annotated[bool, typer.Option("--spawn", help="Open the Rerun viewer with the recordings.")] = False,
    serve: Annotated[bool, typer.Option("--serve", help="Serve Rerun's web viewer on --port and print its URL; Ctrl-C stops it.")] = False,
    port: Annotated[int, typer.Option("--port", help="--serve: the web viewer's port.")] = 9090,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="--serve: the port the recordings are served on.")] = 9876,
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

    def ready(res) -> None:
        if settings.json:
            _print_json(res.to_json())
            return
        out = _stdout()
        for e in res.episodes:
            out.print(f"episode {e['episode']}: {e['frames']} frames" + (f" (picked: {e['reason']})" if e["reason"] else ""))
        for w in res.written:
            out.print(f"wrote {w['path']} ({w['frames']} frames)")
        for note in res.notes:
            out.print(f"note: {note}")
        if res.url:
            out.print(f"Rerun web viewer: {res.url}  (Ctrl-C stops serving)")
        sys.stdout.flush()

    run_view(dataset, settings, episodes=episodes, worst=worst, compare=compare, cameras=cameras, mp4=mp4, rrd=rrd, spawn=spawn,
             serve=(port, grpc_port) if serve else None, on_ready=ready)


def _utc(stamp: str) -> str:
    """2026-12-01T10:04:05+00:00 -> 2026-12-01 10:04:05 (19 columns)."""
    from datetime import datetime, timezone

    try:
        return datetime.fromisoformat(stamp).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(stamp)


def main() -> None:
    app(prog_name="recap-label")  # the name shell completion registers, also under `python -m recap_label`


if __name__ == "__main__":
    main()
