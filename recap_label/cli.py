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

D = Settings.default  # help texts show the built-in defaults from the one place they are set

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
HumanColOpt = Annotated[Optional[str], typer.Option("--human-col", "--human_col", help=f"Intervention column (1 = human frame). [default: {D('human_col')}]", show_default=False)]
AdvColOpt = Annotated[Optional[str], typer.Option("--adv-col", "--adv_col", help=f"Label column to write/read. [default: {D('adv_col')}]", show_default=False)]
RewardColOpt = Annotated[Optional[str], typer.Option("--reward-col", "--reward_col", help=f"Dense reward column. [default: {D('reward_col')}]", show_default=False)]


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
        except OSError as exc:  # disk full, permissions, … outside the places that say more
            from recap_label.store.fsutil import os_error_message

            _err(os_error_message(exc, f"running `recap-label {fn.__name__.removesuffix('_cmd')}`"))
            raise typer.Exit(2) from None
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
    from recap_label.commands.copy import copy_dataset
    from recap_label.lerobot.dataset import resolve_dataset_path

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
    if result.finished_interrupted:
        out.print(f"note: finished an interrupted copy of {result.src}: {result.dest} was complete; its registration is done now")
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
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG: advantage histogram with the threshold, V over time for a few episodes.", show_default=False)] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Finish an interrupted commit first (complete or undo it); without it verify only reads.")] = False,
    human_col: HumanColOpt = None,
    adv_col: AdvColOpt = None,
    json_out: JsonOpt = None,
):
    """Print the adv_ind breakdown by intervention and check the labeled copy's invariants.

    Only reads: an interrupted commit is reported, and finished with --repair (or by the next
    label or rollback). Exit 0 when every invariant holds, 1 when one fails, 2 on bad input.

    Example:  recap-label verify local/vial_rollout_v1_v21_vlm_label --episodes
    """
    from recap_label.commands.verify import run_verify
    from recap_label.lerobot.dataset import resolve_dataset_path

    settings = settings_of(ctx, human_col=human_col, adv_col=adv_col, json=json_out)
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
    t = Table(title="invariants", title_justify="left")
    for col in ("check", "result", "detail"):
        t.add_column(col)
    for c in report.checks:
        t.add_row(c.name, {"pass": "PASS", "fail": "FAIL", "skip": "skip", "warn": "WARN"}[c.status], c.detail)
    out.print(t)
    warned = sum(c.status == "warn" for c in report.checks)
    out.print(("all invariants hold" + (f" ({warned} warning{'s' if warned > 1 else ''})" if warned else "")) if report.ok else "INVARIANT FAILED")



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
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (CUDA).")] = False,
    precision: Annotated[Optional[str], typer.Option("--precision", help=f"SigLIP matmul precision: auto (bf16 on CUDA as pistar runs it, fp32 on CPU), bf16 or fp32. [default: {D('precision')}]", show_default=False)] = None,
    values: Annotated[Optional[Path], typer.Option("--values", help="Value source: parquet file with episode_index, frame_index, value.", show_default=False)] = None,
    value_column: Annotated[Optional[str], typer.Option("--value-column", "--value_column", help="Value source: a float column of the dataset (e.g. value_label).", show_default=False)] = None,
    lookahead: Annotated[Optional[int], typer.Option("--lookahead", help=f"N of the N-step advantage, in frames. [default: {D('lookahead')}]", show_default=False)] = None,
    positive_ratio: Annotated[Optional[float], typer.Option("--positive-ratio", "--positive_ratio", help=f"Share of autonomous rollout frames labeled positive, in (0, 1]. [default: {D('positive_ratio')}]", show_default=False)] = None,
    top_percent: Annotated[Optional[float], typer.Option("--top-percent", "--top_percent", help="The same knob in percent (the reference's flag).", show_default=False)] = None,
    tail_bootstrap: Annotated[Optional[str], typer.Option("--tail-bootstrap", "--tail_bootstrap", help=f"Past the episode end bootstrap with 'zero' (reference code) or 'last' = V[T-1] (reference docs). [default: {D('tail_bootstrap')}]", show_default=False)] = None,
    threshold_scope: Annotated[Optional[str], typer.Option("--threshold-scope", "--threshold_scope", help=f"'global' (reference) or 'task' (one threshold per task, as in the paper). [default: {D('threshold_scope')}]", show_default=False)] = None,
    human_col: HumanColOpt = None,
    adv_col: AdvColOpt = None,
    reward_col: RewardColOpt = None,
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

    if dataset and data_dir and dataset != data_dir:
        raise BadInput("give the dataset once: as DATASET or as --data-dir")
    target = dataset or data_dir
    if not target:
        raise BadInput("no dataset given; pass DATASET (a folder or local/<name>)")
    settings = settings_of(
        ctx, human_col=human_col, adv_col=adv_col, reward_col=reward_col, json=json_out,
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
    source = value_source_from_options(settings, values_file=values, value_column=value_column, use_ema=use_ema, compile_model=compile_model)
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
        t = Table(title="label transitions (rollout frames)", title_justify="left")
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

    Example:  recap-label rollback local/vial_v21_vlm_label_v3            # undo the last label run
    Example:  recap-label rollback local/vial_v21_vlm_label_v3 --iteration  # back to _v2
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
        if res.active_now:
            out.print(f"active iteration now: {res.active_now}")
        return
    root = resolve_dataset_path(dataset, settings.lerobot_home)
    if list_runs:
        from recap_label.lerobot.dataset import LeRobotDataset

        runs = runs_of(LeRobotDataset.open(root).root)
        if settings.json:
            _print_json([r.to_json() for r in runs])
            return
        from rich.table import Table

        t = Table(title=f"runs of {root}", title_justify="left")
        for col in ("run", "time", "kind", "values", "share", "status"):
            t.add_column(col)
        for r in runs:
            if r.kind == "rollback":
                t.add_row(r.id, r.time, r.kind, "", "", "undid " + ", ".join(r.undid))
                continue
            share = "" if r.share is None else f"{100 * r.share:.2f} %"
            status = f"rolled back by {r.rolled_back}" if r.rolled_back else "active"
            t.add_row(r.id, r.time, r.kind, r.value_source.get("source", ""), share, status)
        _stdout().print(t)
        return
    res = rollback_runs(root, to)
    if settings.json:
        _print_json(res.to_json())
        return
    out = _stdout()
    for note in res.notes:
        out.print(f"note: {note}")
    out.print(f"rolled back {', '.join(res.undone)}: {res.files_restored} data file(s) restored to their prior labels")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
