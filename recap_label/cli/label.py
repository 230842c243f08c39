"""`recap-label label` (and `label --score-only`, one shard of a scoring array)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import recap_label.cli.render as render
from recap_label.cli.app import app
from recap_label.cli.options import D, AdvColOpt, HumanColOpt, JsonOpt, McValueColOpt, RewardColOpt, settings_of
from recap_label.cli.output import show

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
def label_cmd(
    ctx: typer.Context,
    dataset: Annotated[
        Optional[str],
        typer.Argument(help="Dataset folder or local/<name> (a copy made by `recap-label copy`).", show_default=False),
    ] = None,
    data_dir: Annotated[
        Optional[str],
        typer.Option(
            "--data-dir", "--data_dir", help="Same as DATASET (the reference script's flag).", show_default=False
        ),
    ] = None,
    checkpoint_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint-dir",
            "--checkpoint_dir",
            help="Value source: a pistar Stage-4 checkpoint folder (step_XXXXXXXX/ or one step).",
            show_default=False,
        ),
    ] = None,
    checkpoint_step: Annotated[
        Optional[str],
        typer.Option(
            "--checkpoint-step",
            "--checkpoint_name",
            help="Which step (e.g. 5000 or step_00005000). [default: latest complete]",
            show_default=False,
        ),
    ] = None,
    use_ema: Annotated[
        bool, typer.Option("--use-ema/--no-use-ema", "--use_ema/--no-use_ema", help="Use the EMA weights.")
    ] = True,
    tokenizer_path: Annotated[
        Optional[Path],
        typer.Option(
            "--tokenizer-path",
            "--tokenizer_path",
            help="SentencePiece tokenizer.model of the value model.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            "--batch-size",
            "--batch_size",
            help="Inference batch size. [default: 64 on CUDA, 8 on CPU]",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option("--device", help=f"auto, cpu, cuda or cuda:N. [default: {D('device')}]", show_default=False),
    ] = None,
    num_workers: Annotated[
        Optional[int],
        typer.Option(
            "--num-workers",
            "--num_workers",
            help="Decode workers. [default: 0 on <= 2 cores, else min(8, cores-1)]",
            show_default=False,
        ),
    ] = None,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the model; on CUDA with CUDA graphs (mode reduce-overhead: every batch has one "
            "shape). Checked up front: exit 2 without a working compiler.",
        ),
    ] = False,
    precision: Annotated[
        Optional[str],
        typer.Option(
            "--precision",
            help=f"Numerics. tf32: SigLIP encoder bf16, the rest fp32 with TF32 matmuls (pistar's JAX forward on a "
            f"GPU; CUDA only); bf16: SigLIP encoder bf16, the rest strict fp32; fp32: all strict fp32 (the CPU "
            f"reference). auto: tf32 on CUDA, fp32 on CPU. Fidelity per mode: README 'GPU'. [default: "
            f"{D('precision')}]",
            show_default=False,
        ),
    ] = None,
    values_file: Annotated[
        Optional[Path],
        typer.Option(
            "--values", help="Value source: parquet file with episode_index, frame_index, value.", show_default=False
        ),
    ] = None,
    value_column: Annotated[
        Optional[str],
        typer.Option(
            "--value-column",
            "--value_column",
            help="Value source: a float column of the dataset (e.g. value_label).",
            show_default=False,
        ),
    ] = None,
    values_column: Annotated[
        Optional[str],
        typer.Option(
            "--values-column",
            "--values_column",
            help="With --values: the file's column holding V. [default: value]",
            show_default=False,
        ),
    ] = None,
    lookahead: Annotated[
        Optional[int],
        typer.Option(
            "--lookahead", help=f"N of the N-step advantage, in frames. [default: {D('lookahead')}]", show_default=False
        ),
    ] = None,
    positive_ratio: Annotated[
        Optional[float],
        typer.Option(
            "--positive-ratio",
            "--positive_ratio",
            help=f"Share of autonomous rollout frames labeled positive, in (0, 1]. [default: {D('positive_ratio')}]",
            show_default=False,
        ),
    ] = None,
    top_percent: Annotated[
        Optional[float],
        typer.Option(
            "--top-percent",
            "--top_percent",
            help="The same knob in percent (the reference's flag).",
            show_default=False,
        ),
    ] = None,
    tail_bootstrap: Annotated[
        Optional[str],
        typer.Option(
            "--tail-bootstrap",
            "--tail_bootstrap",
            help=f"Past the episode end bootstrap with 'zero' (reference code) or 'last' = V[T-1] (reference docs). "
            f"[default: {D('tail_bootstrap')}]",
            show_default=False,
        ),
    ] = None,
    threshold_scope: Annotated[
        Optional[str],
        typer.Option(
            "--threshold-scope",
            "--threshold_scope",
            help=f"'global' (reference) or 'task' (one threshold per task, as in the paper). [default: "
            f"{D('threshold_scope')}]",
            show_default=False,
        ),
    ] = None,
    human_col: HumanColOpt = None,
    adv_col: AdvColOpt = None,
    reward_col: RewardColOpt = None,
    mc_value_col: McValueColOpt = None,
    base_image_col: Annotated[
        Optional[str],
        typer.Option(
            "--base-image-col",
            "--base_image_col",
            help="Base camera column (model slot base_0_rgb).",
            show_default=False,
        ),
    ] = None,
    wrist_image_col: Annotated[
        Optional[str],
        typer.Option(
            "--wrist-image-col", "--wrist_image_col", help="Wrist camera column (slot wrist_0_rgb).", show_default=False
        ),
    ] = None,
    right_wrist_image_col: Annotated[
        Optional[str],
        typer.Option(
            "--right-wrist-image-col",
            "--right_wrist_image_col",
            help="Optional third camera (slot right_wrist_0_rgb; pistar's critic was trained on two).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compute and report what would change; write nothing.")
    ] = False,
    score_only: Annotated[
        bool,
        typer.Option(
            "--score-only",
            help="Only score (infer V into the value parts); write no labels. With --shard: this process's share.",
        ),
    ] = False,
    shard: Annotated[
        Optional[str],
        typer.Option(
            "--shard",
            help="I/N: with --score-only, score shard I (1-based) of N, balanced by frames; the same split on any "
            "machine.",
            show_default=False,
        ),
    ] = None,
    episode_shard_index: Annotated[
        Optional[int],
        typer.Option(
            "--episode_shard_index",
            "--episode-shard-index",
            help="pistar-world's spelling of --shard: the shard's 0-based index (with --episode_num_shards).",
            show_default=False,
        ),
    ] = None,
    episode_num_shards: Annotated[
        Optional[int],
        typer.Option(
            "--episode_num_shards",
            "--episode-num-shards",
            help="pistar-world's spelling of --shard: the number of shards.",
            show_default=False,
        ),
    ] = None,
    recompute: Annotated[
        bool, typer.Option("--recompute", help="Ignore cached values and run inference again.")
    ] = False,
    allow_original: Annotated[
        bool, typer.Option("--allow-original", help="Allow labeling a dataset that is not a recap-label copy.")
    ] = False,
    infer: Annotated[
        str,
        typer.Option(
            "--infer",
            help="Which rollout frames the value model scores: 'all' (V complete, for the value-model section, view "
            "and diff) or 'needed' (the fast mode: autonomous frames and their lookahead endpoints only; the same "
            "labels).",
        ),
    ] = "all",
    json_out: JsonOpt = None,
):
    import recap_label.commands.label as labeling
    from recap_label.label_request import LabelRequest
    from recap_label.lerobot.dataset import resolve_dataset_path
    from recap_label.rule import RuleSettings
    from recap_label.values.factory import value_source_from_options

    flags = dict(ctx.params)  # by parameter name: the request's flags, then Settings keys
    request = LabelRequest.from_flags(**{name: flags.pop(name) for name in LabelRequest.FLAGS})
    settings = settings_of(ctx, positive_ratio=request.positive_ratio, json=flags.pop("json_out"), **flags)
    rule = RuleSettings(settings.lookahead, settings.positive_ratio, settings.tail_bootstrap, settings.threshold_scope)
    root = resolve_dataset_path(request.dataset, settings.lerobot_home)
    source = value_source_from_options(settings, **request.source_options)
    if request.score_only:
        scored = labeling.score_only(root, settings, source, **request.score_options)
        show(settings, scored, render.scored)
        return
    outcome = labeling.run_label(
        root,
        settings,
        rule,
        source,
        dry_run=request.dry_run,
        recompute=request.recompute,
        allow_original=request.allow_original,
        infer=request.infer,
    )
    show(settings, outcome, render.labeled)
