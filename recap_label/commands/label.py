"""`label`: read the columns, get V, plan the new labels, commit them in one transaction.

`plan_labels` is pure: from the columns and V it computes everything that would be written
and reported (`LabelPlan`); `--dry-run` stops there. `commit_labels` stages the rewritten data
files, the prior labels, the values sidecar and the new lineage record in one journaled commit.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from recap_label.config import Settings
from recap_label.errors import BadInput, UnsafeWriteError
from recap_label.lerobot.columns import LabelColumns, read_label_columns
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.rule import (
    LabelResult,
    needed_rows,
    RuleSettings,
    apply_rule_to,
    demo_labels_digest,
    label_transitions,
    share_per_task,
    long_lookahead_warning,
    tail_trap_warning,
)
from recap_label.store import completion
from recap_label.store.fsutil import sha256_file
from recap_label.store.lineage import LabelRun, Lineage, RunSettings, lineage_bytes, now_iso, read_lineage
from recap_label.store.lock import dataset_lock, live_holder
from recap_label.store.paths import INFO_JSON, LINEAGE_FILE, info_prior_file, prior_labels_file
from recap_label.store.writeback import (
    CREATED_COLUMN_KEY,
    Transaction,
    check_writable_target,
    encode_schema_metadata,
    pending_commit,
    recover,
)
from recap_label.summary import Breakdown, breakdown
from recap_label.values import distributed
from recap_label.values.cache import ValueCache
from recap_label.values.types import ValueSource, assemble_values


@dataclass
class LabelPlan:
    """What a label run would write, and its report; computed without touching the disk."""

    root: Path
    run_id: str
    settings: RunSettings
    provenance: dict
    values_from: str
    cols: LabelColumns
    value: np.ndarray
    result: LabelResult
    new_labels: np.ndarray
    changed_files: list[tuple[Path, tuple[int, int]]]  # data files with a changed row, and their rows
    add_feature: bool  # meta/info.json does not declare the label column yet
    add_column: list[Path]  # data files without the label column: it is created there
    breakdown: Breakdown
    transitions: dict[str, int]
    share_per_task: dict[str, float | None]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    input_keys: dict[int, str] = field(default_factory=dict)  # what each episode's V was computed from
    inference_stats: dict = field(
        default_factory=dict
    )  # the value model's stats, when inference ran (values.model_source)
    infer: dict = field(default_factory=dict)  # --infer: its mode and the frames with and without V


@dataclass
class LabelOutcome:
    dataset: Path
    run_id: str | None
    dry_run: bool
    values_from: str
    thresholds: dict
    pool_sizes: dict
    breakdown: Breakdown
    transitions: dict[str, int]
    share_per_task: dict[str, float | None]
    files_rewritten: int  # of a dry run: the files it would rewrite
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    task_names: dict[str, str] = field(default_factory=dict)  # task index → its text (share_per_task's keys)
    value_model: object | None = None  # value_check.ValueModelSection of the V this run used
    performance: dict | None = None  # inference speed, time split and what it ran on (None: no inference)
    on_reported: Callable[[], None] | None = field(default=None, repr=False, compare=False)  # store.completion
    infer: dict | None = None  # --infer: mode, rollout frames with V and skipped (commands.label._infer_record)

    @classmethod
    def of(cls, plan: LabelPlan, *, dry_run: bool, notes: list[str], timings: dict[str, float]) -> "LabelOutcome":
        write = None if dry_run else timings.get("stage", 0.0) + timings.get("commit", 0.0)
        return cls(
            plan.root,
            None if dry_run else plan.run_id,
            dry_run,
            plan.values_from,
            plan.result.thresholds,
            plan.result.pool_sizes,
            plan.breakdown,
            plan.transitions,
            plan.share_per_task,
            len(plan.changed_files),
            plan.warnings,
            [*notes, *plan.notes],
            timings,
            performance=performance(plan.inference_stats, write, timings),
            infer=plan.infer or None,
        )

    @classmethod
    def of_run(cls, root: Path, run: LabelRun, *, notes: list[str]) -> "LabelOutcome":
        """The outcome of a run already recorded (a retry that found it landed)."""
        counts = dict(run.counts)
        b = Breakdown(
            **{
                k: counts[k]
                for k in (
                    "frames",
                    "labels",
                    "intervention",
                    "autonomous",
                    "autonomous_positive_share",
                    "demo_episodes",
                    "rollout_episodes",
                )
            }
        )
        return cls(
            root,
            run.id,
            False,
            run.values_from,
            run.thresholds,
            run.pool_sizes,
            b,
            run.transitions,
            run.share_per_task,
            len(run.files_rewritten),
            [],
            notes,
            {},
            performance=run.performance,
        )

    def to_json(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "run": self.run_id,
            "dry_run": self.dry_run,
            "values_from": self.values_from,
            "thresholds": self.thresholds,
            "pool_sizes": self.pool_sizes,
            "breakdown": self.breakdown.to_json(),
            "transitions": self.transitions,
            "task_names": self.task_names,
            "share_per_task": self.share_per_task,
            # a dry run rewrites nothing: what it would rewrite has its own key
            "files_rewritten": 0 if self.dry_run else self.files_rewritten,
            **({"files_to_rewrite": self.files_rewritten} if self.dry_run else {}),
            "warnings": self.warnings,
            "notes": self.notes,
            "timings_s": self.timings,
            "performance": self.performance,
            "infer": self.infer,
            "value_model": None if self.value_model is None else self.value_model.to_json(),
        }


_KNOWN_STATS = {
    "frames",
    "wall_s",
    "fetch_wait_s",
    "infer_s",
    "result_wait_s",
    "frames_per_s",
    "load_s",
    "device",
    "precision",
    "batch_size",
    "num_workers",
    "checkpoint_step",
    "ema",
}


def performance(stats: dict, write_s: float | None, timings: dict[str, float] | None = None) -> dict | None:
    """The value model's run in one record: frames/s, the wall-time split, device, precision,
    checkpoint step and EMA; other engine figures under "engine" (counts as integers).

    The split adds up: with `timings` (the label run's own: read, total) it is read · load ·
    fetch · infer · result wait · write · other = total, "other" being the rest (the rule, the
    value cache, the process's own work); frames/s is the inference's one clock (the progress
    line's too)."""
    if not stats:
        return None

    def sec(value) -> float | None:
        return None if value is None else round(float(value), 3)

    split = {
        "read": sec((timings or {}).get("read")),
        "load": sec(stats.get("load_s")),
        "fetch": sec(stats.get("fetch_wait_s")),
        "infer": sec(stats.get("infer_s")),
        "result_wait": sec(stats.get("result_wait_s")),
        "write": sec(write_s),
    }
    total = (timings or {}).get("total")
    if total is not None:
        split["other"] = round(max(0.0, float(total) - sum(v for v in split.values() if v is not None)), 3)
        split["total"] = sec(total)
    return {
        "frames": int(stats.get("frames", 0)),
        "frames_per_s": round(float(stats.get("frames_per_s", 0.0)), 2),
        "inference_s": sec(stats.get("wall_s")),  # fetch + infer + result waits + the consumer's share
        "wall_s": split,
        "device": stats.get("device"),
        "precision": stats.get("precision"),
        "batch_size": _count(stats.get("batch_size")),
        "num_workers": _count(stats.get("num_workers")),
        "checkpoint_step": _count(stats.get("checkpoint_step")),
        "ema": stats.get("ema"),
        "engine": {k: _figure(k, v) for k, v in stats.items() if k not in _KNOWN_STATS},
    }


def _count(value):
    """A count (batches, workers, frames) as an integer, whatever number type the engine gave."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _figure(key: str, value):
    if key.endswith("_s") and isinstance(value, (int, float)):
        return round(float(value), 3)  # seconds, and rates (…_per_s)
    if key == "device_letterbox":
        return bool(value)
    return _count(value) if isinstance(value, float) else value


def plan_labels(
    ds: DatasetFiles,
    cols: LabelColumns,
    value: np.ndarray,
    rule: RuleSettings,
    settings: Settings,
    *,
    provenance: dict,
    values_from: str,
    run_id: str,
    input_keys: dict[int, str] | None = None,
) -> LabelPlan:
    """Apply the rule and work out every file, count and warning of the run (pure)."""
    result = apply_rule_to(cols, value, rule)
    new_labels = result.labels(cols.labels)
    add_column = set(cols.without_label_column)
    for path, (lo, hi) in cols.file_slices():
        if path in add_column:  # a created column: demo rows get "positive", as pistar's demo writers put there
            demo = ~cols.rollout_rows[lo:hi]
            new_labels[lo:hi][demo] = "positive"
    changed = cols.labels != new_labels  # only rollout rows can change, and the rows of created columns
    changed_files = [
        (path, (lo, hi)) for path, (lo, hi) in cols.file_slices() if path in add_column or changed[lo:hi].any()
    ]
    warnings = [
        w for w in [long_lookahead_warning(cols, rule.lookahead), tail_trap_warning(cols, result, rule.lookahead)] if w
    ]
    notes = []
    if add_column:
        notes.append(
            f"created the label column {settings.adv_col!r} (string) in {len(add_column)} data file(s) that lacked "
            f"it: rollout frames as labeled, "
            "demo frames 'positive'; `recap-label rollback` removes it again"
        )
    run_settings = RunSettings(
        rule.lookahead,
        rule.positive_ratio,
        rule.tail_bootstrap,
        rule.threshold_scope,
        settings.human_col,
        settings.reward_col,
        settings.adv_col,
    )
    return LabelPlan(
        root=ds.root,
        run_id=run_id,
        settings=run_settings,
        provenance=provenance,
        values_from=values_from,
        cols=cols,
        value=value,
        result=result,
        new_labels=new_labels,
        changed_files=changed_files,
        add_feature=settings.adv_col not in ds.features,
        add_column=[p for p in ds.data_files if p in add_column],
        breakdown=breakdown(cols.episode, cols.human, new_labels, kinds=cols.kinds),
        transitions=label_transitions(
            cols.labels[cols.rollout_rows], new_labels[cols.rollout_rows]
        ),  # demo rows change only in a created column (see notes)
        share_per_task=share_per_task(cols, result),
        warnings=warnings,
        notes=notes,
        input_keys=input_keys or {},
    )


def commit_labels(
    ds: DatasetFiles,
    plan: LabelPlan,
    lineage: Lineage,
    cache: ValueCache,
    *,
    recovered: str | None,
    started: float,
    then: Callable[[LabelRun], None] | None = None,
) -> tuple[LabelRun, dict[str, float]]:
    """Stage the new data files, the prior labels, the sidecar and the lineage; commit them at once.
    `then(run)` records the completion in the same Ctrl-C-proof step as the commit.
    Returns the run recorded and the time spent staging and committing."""
    t0 = time.perf_counter()
    cols, adv_col = plan.cols, plan.settings.adv_col
    txn = Transaction(ds.root, plan.run_id)
    rewritten, prior_files, prior_labels = [], [], []  # per file: its name, its rows' labels before (arrays)
    created: dict[str, str] = {}  # file → its schema metadata before the column was added (for rollback)
    for path, (lo, hi) in plan.changed_files:
        txn.stage_labels(path, adv_col, plan.new_labels[lo:hi], signature=cols.signatures.get(path))
        rel = path.relative_to(ds.root).as_posix()
        rewritten.append(rel)
        prior_files.append(pa.DictionaryArray.from_arrays(np.zeros(hi - lo, np.int32), pa.array([rel])))
        if path in plan.add_column:
            created[rel] = encode_schema_metadata(ds.schema(path).metadata)
            prior_labels.append(pa.nulls(hi - lo, pa.string()))
        else:
            prior_labels.append(pa.array(cols.labels[lo:hi], pa.string()))
    info_prior = None
    if plan.add_feature:
        info_prior = info_prior_file(plan.run_id)
        info = dict(ds.info)
        info["features"] = {**ds.features, adv_col: {"dtype": "string", "shape": [1], "names": None}}
        txn.stage_bytes(ds.root / info_prior, (ds.root / INFO_JSON).read_bytes())
        txn.stage_bytes(ds.root / INFO_JSON, (json.dumps(info, indent=4, ensure_ascii=False) + "\n").encode())
    prior = prior_labels_file(plan.run_id)
    prior_table = pa.table(
        {
            "file": pa.chunked_array([f.cast(pa.string()) for f in prior_files], pa.string()),
            "label": pa.chunked_array(prior_labels, pa.string()),
        }
    )
    if created:
        prior_table = prior_table.replace_schema_metadata({CREATED_COLUMN_KEY: json.dumps(created).encode()})
    txn.stage_table(ds.root / prior, prior_table)
    sel = cols.rollout_rows
    settings_json = plan.settings.to_json()
    cache.stage(
        txn,
        cols.episode[sel],
        cols.frame[sel],
        plan.value[sel],
        plan.result.advantage[sel],
        plan.new_labels[sel],
        provenance=plan.provenance,
        settings=settings_json,
        input_keys=plan.input_keys,
    )
    staged = {s.target.relative_to(ds.root).as_posix(): s.staged for s in txn.staged}
    staging_s = time.perf_counter() - t0  # the rewrite itself; the renames of the commit follow
    b = plan.breakdown
    run = LabelRun(
        id=plan.run_id,
        time=now_iso(),
        settings=plan.settings,
        value_source=plan.provenance,
        values_from=plan.values_from,
        thresholds=plan.result.thresholds,
        pool_sizes=plan.result.pool_sizes,
        counts=b.to_json(),
        share=b.autonomous_positive_share,
        share_per_task=plan.share_per_task,
        transitions=plan.transitions,
        files_rewritten=rewritten,
        file_sha256_after={rel: sha256_file(staged[rel]) for rel in rewritten},
        prior_labels=prior.as_posix(),
        info_json_prior=None if info_prior is None else info_prior.as_posix(),
        demo_labels_sha256=demo_labels_digest(
            cols.episode, cols.human, plan.new_labels, cols.kinds
        ),  # = before, unless the column was created
        recovered=recovered,
        duration_s=round(time.perf_counter() - started, 3),
        performance=performance(plan.inference_stats, staging_s),
    )
    txn.stage_bytes(ds.root / LINEAGE_FILE, lineage_bytes(lineage.with_run(run)))
    t_stage = time.perf_counter()
    with completion.sigint_deferred():
        txn.commit()
        if then is not None:
            then(run)
    return run, {"stage": t_stage - t0, "commit": time.perf_counter() - t_stage}


def check_safe_to_write(ds: DatasetFiles, allow_original: bool) -> Lineage:
    """The copy's lineage; refuses originals (unless allowed) and linked data files."""
    record = read_lineage(ds.root)
    refuse_unlabelable(ds.root, record, allow_original)
    for path in ds.data_files:
        check_writable_target(ds.root, path)
    return record or Lineage.for_original()


def refuse_unlabelable(root: Path, record: Lineage | None, allow_original: bool) -> None:
    """An original (unless allowed) and a retired copy are never labeled; a dry run says so too,
    before it infers anything."""
    if record is None and not allow_original:
        raise UnsafeWriteError(
            f"{root} has no copy lineage: it looks like an original dataset; label a copy made with `recap-label "
            f"copy`, or pass --allow-original"
        )
    if record is not None and record.retired:
        raise BadInput(
            f"{root.name} was retired ({record.retired}): a retired iteration is not labeled; `recap-label unretire "
            f"{root}` brings it back into the loop"
        )


def run_label(
    ds_root: Path,
    settings: Settings,
    rule: RuleSettings,
    source: ValueSource,
    *,
    dry_run: bool = False,
    recompute: bool = False,
    allow_original: bool = False,
    infer: str = "all",
) -> LabelOutcome | None:
    """The whole `label` command; None on a non-zero torchrun rank (rank 0 reports). `infer`:
    "all" rollout frames get V, or only the "needed" ones (rule.needed_rows; the same labels)."""
    started = time.perf_counter()
    dist = distributed.start()
    if dist is not None and infer == "needed":
        dist.release()
        raise BadInput("--infer needed runs in one process; under torchrun use --infer all (the default)")
    if dist is not None and dist.rank != 0:
        distributed.follow(ds_root, source, dist)
        return None
    completion.phase(
        "interrupted before the commit: no label was written (values inferred so far are kept; the next run "
        "resumes from them)"
    )
    try:
        ds = DatasetFiles.open(ds_root)
        ds.require_complete()  # a missing video would surface only after inferring the episodes before it
        if dry_run:
            if pending_commit(ds.root) is not None:
                raise BadInput(
                    f"{ds.root} has an interrupted commit; run `recap-label verify --repair` or `label` without "
                    f"--dry-run to complete it first"
                )
            lineage = read_lineage(ds.root)
            refuse_unlabelable(ds.root, lineage, allow_original)
            lineage = lineage or Lineage.for_original()
            cache = ValueCache.of(ds, source, settings, dry_run=True)
            plan, timings = _plan(ds, settings, rule, cache, lineage, recompute, dist, started, infer)
            timings["total"] = time.perf_counter() - started
            kept = cache.dry_run_dir
            notes = (
                [f"values kept outside the dataset for the next `label` of it: {kept}"]
                if kept is not None and kept.exists()
                else []
            )
            return _with_value_model(
                LabelOutcome.of(plan, dry_run=True, notes=notes, timings=timings), plan, settings, ds
            )
        refuse_unlabelable(ds.root, read_lineage(ds.root), allow_original)  # before anything (even a lock) is made
        with dataset_lock(ds.root, "label") as lock:
            _refuse_live_scorers(ValueCache(ds, source))
            note = recover(ds.root)
            ds = DatasetFiles.open(ds_root) if note else ds
            cache = ValueCache.of(ds, source, settings)
            lineage = check_safe_to_write(ds, allow_original)
            args = {
                "rule": rule.__dict__,
                "columns": [settings.human_col, settings.reward_col, settings.adv_col],
                "source": source.provenance(),
                "allow_original": allow_original,
                "recompute": recompute,
                "infer": infer,
            }
            landed = lineage.run(lock.interrupted_run("label", args) or "")
            if isinstance(landed, LabelRun) and landed is lineage.runs[-1]:
                # the same command was interrupted after its commit landed (before or while it
                # reported): finish and report that run, do not label twice
                lock.declare("label", args, landed.id)
                lock.committed(_done_summary(ds.root, landed.id, len(landed.files_rewritten)))
                cache.committed()
                moved = _move_active(settings.lerobot_home, ds.root)
                outcome = LabelOutcome.of_run(
                    ds.root,
                    landed,
                    notes=[n for n in [note, _finished_note(landed.id), moved] if n],
                )
                outcome.on_reported = completion.reporter(ds.root)
                return outcome
            lock.declare("label", args, lineage.next_run_id())
            plan, timings = _plan(ds, settings, rule, cache, lineage, recompute, dist, started, infer)
            _refuse_live_scorers(cache)  # one may have started while V was gathered
            _run, written = commit_labels(
                ds,
                plan,
                lineage,
                cache,
                recovered=note,
                started=started,
                then=lambda run: lock.committed(_done_summary(ds.root, run.id, len(run.files_rewritten))),
            )
            cache.committed()
            timings.update(written)
            timings["total"] = time.perf_counter() - started
            notes = [n for n in [note, _move_active(settings.lerobot_home, ds.root)] if n]
            outcome = LabelOutcome.of(plan, dry_run=False, notes=notes, timings=timings)
            outcome.on_reported = completion.reporter(ds.root)
            return _with_value_model(outcome, plan, settings, ds)
    finally:
        if dist is not None:
            dist.release()


def _done_summary(root: Path, run_id: str, files: int) -> str:
    return f"labeled {root} as {run_id} ({files} data file(s) rewritten)"


def _finished_note(run_id: str) -> str:
    return f"finished the interrupted {run_id}: its commit had landed; this is its report (nothing was labeled again)"


def _plan(
    ds, settings, rule, cache: ValueCache, lineage: Lineage, recompute: bool, dist, started: float, infer: str = "all"
) -> tuple[LabelPlan, dict[str, float]]:
    """Read the columns, obtain V for the rollout episodes (`infer` "needed": for the frames the
    rule uses only), plan the labels."""
    cols = read_label_columns(
        ds, human_col=settings.human_col, adv_col=settings.adv_col, reward_col=settings.reward_col
    )
    t_read = time.perf_counter()
    source = cache.source
    source.bind(ds)
    episodes = cols.rollout_episodes()
    required = needed_rows(cols, rule.lookahead, rule.tail_bootstrap) if infer == "needed" else None
    if dist is not None:
        values = distributed.lead(cache, episodes, recompute, dist)
    else:
        values = cache.gather(
            episodes, recompute=recompute, want=None if required is None else _frames_of(cols, required)
        )
    value = assemble_values(
        cols.episode, cols.frame, cols.rollout_rows, values.by_episode, source.name, required=required
    )
    t_values = time.perf_counter()
    plan = plan_labels(
        ds,
        cols,
        value,
        rule,
        settings,
        provenance=values.provenance,
        values_from=values.values_from,
        run_id=lineage.next_run_id(),
        input_keys=values.input_keys,
    )
    plan.inference_stats = dict(getattr(source, "stats", None) or {})
    plan.infer = _infer_record(infer, cols, value, required)
    if required is not None:
        plan.notes.append(infer_note(plan.infer))
    t_rule = time.perf_counter()
    return plan, {"read": t_read - started, "values": t_values - t_read, "rule": t_rule - t_values}


def _frames_of(cols: LabelColumns, rows: np.ndarray) -> dict[int, np.ndarray]:
    """Per rollout episode, the frame indices of its `rows` (bool per row)."""
    g = cols.groups
    chosen = np.asarray(rows, dtype=bool)[g.order]
    frames = np.asarray(cols.frame, dtype=np.int64)[g.order]
    rollout = set(cols.rollout_episodes())
    return {int(e): frames[lo:hi][chosen[lo:hi]] for e, lo, hi in zip(g.ids, g.starts, g.stops) if int(e) in rollout}


def _infer_record(infer: str, cols: LabelColumns, value: np.ndarray, required: np.ndarray | None) -> dict:
    """What `--infer` did: rollout frames, those with V, those left without (skipped), those the rule needs."""
    rollout = cols.rollout_rows
    with_v = int(np.count_nonzero(np.isfinite(value[rollout])))
    return {
        "mode": infer,
        "rollout_frames": int(np.count_nonzero(rollout)),
        "frames_with_value": with_v,
        "frames_skipped": int(np.count_nonzero(rollout)) - with_v,
        "frames_needed": None if required is None else int(np.count_nonzero(required & rollout)),
    }


def infer_note(record: dict) -> str:
    return (
        f"--infer needed: V for {record['frames_with_value']:,} of {record['rollout_frames']:,} rollout frames; "
        f"{record['frames_skipped']:,} intervention frames that are no lookahead endpoint were not scored (they are "
        f"labeled positive whatever V says; the labels are those of --infer all)"
    )


def _with_value_model(outcome: LabelOutcome, plan: LabelPlan, settings: Settings, ds: DatasetFiles) -> LabelOutcome:
    """The end-of-label value-model section (numpy only: no polars on the label path), and the
    tasks' texts the per-task share is shown by."""
    from recap_label.value_check import section_of_plan

    outcome.value_model = section_of_plan(plan, settings, ds)
    outcome.task_names = {str(k): str(v) for k, v in ds.tasks.items()}
    return outcome


def _move_active(home: Path, root: Path) -> str | None:
    """The first label run of an iteration, or any when no `_active` exists, makes it the active
    one (lerobot.active); the labels are committed already, so a failure here is a note, not an error."""
    from recap_label.lerobot.active import after_label, alias_of

    try:
        return after_label(home, root)
    except OSError as exc:
        return (
            f"could not point local/{alias_of(home, root).name} at this copy ({exc.strerror}); run "
            f"`recap-label activate {root}`"
        )
    except BadInput as exc:  # something that is not the link stands where the alias belongs
        return f"the labels are committed, but `_active` was not set: {exc}"


def _refuse_live_scorers(cache: ValueCache) -> None:
    scorers = cache.live_scorers()
    if scorers:
        who = "; ".join(f"{s.get('what')} (pid {s.get('pid')} on {s.get('host')})" for s in scorers)
        raise BadInput(
            f"{cache.ds.root.name} is being scored by {len(scorers)} process(es): {who}; label when they have finished"
        )


# -- scoring only: one shard of a cluster array, or everything before a dry run ----------------


@dataclass
class ScoreOutcome:
    dataset: Path
    shard: tuple[int, int] | None
    episodes: int  # rollout episodes this process is responsible for
    inferred: int  # of them, scored now
    reused: int  # already scored (resumed)
    frames: int
    parts: Path
    missing_shards: list[int]
    dropped: list[int] = field(default_factory=list)  # damaged parts scored again
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
            "episodes": self.episodes,
            "inferred": self.inferred,
            "reused": self.reused,
            "frames": self.frames,
            "parts": str(self.parts),
            "missing_shards": self.missing_shards,
            "dropped": self.dropped,
            "seconds": round(self.seconds, 3),
        }


def score_only(
    ds_root: Path,
    settings: Settings,
    source: ValueSource,
    *,
    shard: tuple[int, int] | None,
    recompute: bool = False,
    allow_original: bool = False,
) -> ScoreOutcome:
    """Score this process's share of the rollout episodes into the value parts; write no labels.

    Takes no lock (many shards run at once); refuses while a label or rollback holds the lock or
    a commit is pending, and registers itself so that a label commit waits for it."""
    started = time.perf_counter()
    ds = DatasetFiles.open(ds_root)
    # the value parts live in the dataset: an original is not scored (unless allowed), a retired copy never
    refuse_unlabelable(ds.root, read_lineage(ds.root), allow_original)
    ds.require_complete()
    cols = read_label_columns(
        ds, human_col=settings.human_col, adv_col=settings.adv_col, reward_col=settings.reward_col
    )
    source.bind(ds)
    cache = ValueCache(ds, source)
    what = "scoring" if shard is None else f"scoring shard {shard[0]}/{shard[1]}"
    with cache.scoring(what):
        if pending_commit(ds.root) is not None:
            raise BadInput(
                f"{ds.root.name} has an interrupted commit; finish it with `recap-label label` (or `verify`) first, "
                f"then score"
            )
        holder = live_holder(ds.root)
        if holder is not None:
            raise BadInput(
                f"{ds.root.name} is being written by `recap-label {holder.get('command')}` (pid "
                f"{holder.get('pid')}); score when it has finished"
            )
        done = cache.score(cols.rollout_episodes(), shard=shard, recompute=recompute)
    frames = int(sum(ds.episodes[e].length for e in done.episodes))
    return ScoreOutcome(
        ds.root,
        shard,
        len(done.episodes),
        done.inferred,
        done.reused,
        frames,
        done.parts,
        done.missing_shards,
        done.dropped,
        time.perf_counter() - started,
    )
