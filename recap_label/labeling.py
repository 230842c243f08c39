"""`label`: read the columns, get V, apply the rule, write the labels back in one commit."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from recap_label.advantage import LabelResult, RuleSettings, apply_rule, episode_kinds
from recap_label.config import Settings
from recap_label.dataset import LeRobotDataset, group_episodes
from recap_label.errors import BadInput, DatasetError, RecapError, UnsafeWriteError
from recap_label.fsutil import sha256_file
from recap_label.lineage import LINEAGE_FILE, STATE_DIR, now_iso, read_lineage
from recap_label.lock import dataset_lock
from recap_label.report import Breakdown, breakdown, human_mask, scalar_column
from recap_label.values import SIDECAR, PartialValues, ValueSource, assemble_values, discard_partial, gather_values, sidecar_table
from recap_label.verify import demo_labels_digest
from recap_label.writeback import Transaction, check_writable_target, file_signature, pending_commit, recover

RUNS_DIR = STATE_DIR / "runs"


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
    files_rewritten: int
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "dataset": str(self.dataset), "run": self.run_id, "dry_run": self.dry_run, "values_from": self.values_from,
            "thresholds": self.thresholds, "pool_sizes": self.pool_sizes, "breakdown": self.breakdown.to_json(),
            "transitions": self.transitions, "share_per_task": self.share_per_task, "files_rewritten": self.files_rewritten,
            "warnings": self.warnings, "notes": self.notes, "timings_s": self.timings,
        }


@dataclass
class DatasetColumns:
    """The light per-row columns of a whole dataset, concatenated in file order."""

    episode: np.ndarray
    frame: np.ndarray
    task: np.ndarray
    human: np.ndarray
    reward: np.ndarray
    labels: np.ndarray
    file_rows: list[tuple[Path, int]]  # (data file, number of rows) in concatenation order
    signatures: dict[Path, list[int]] = field(default_factory=dict)  # as read: a later rewrite is refused


def read_dataset_columns(ds: LeRobotDataset, settings: Settings) -> DatasetColumns:
    if not ds.data_files:
        raise DatasetError(f"{ds.root} has no episodes; nothing to label")
    names = ds.schema(ds.data_files[0]).names
    for col, flag in ((settings.reward_col, "--reward-col"), (settings.human_col, "--human-col"), (settings.adv_col, "--adv-col")):
        if col not in names:
            raise DatasetError(f"column {col!r} is missing from {ds.data_files[0]}; pass the right {flag} (the label column must exist, e.g. the 'none' placeholder)")
    cols = ["episode_index", "frame_index", "task_index", settings.human_col, settings.reward_col, settings.adv_col]
    signatures = {p: file_signature(p) for p in ds.data_files}
    tables = [ds.read_columns(cols, [p]) for p in ds.data_files]
    file_rows = [(p, t.num_rows) for p, t in zip(ds.data_files, tables)]
    table = pa.concat_tables(tables)
    reward_col = table[settings.reward_col]
    if not (pa.types.is_floating(reward_col.type) or pa.types.is_integer(reward_col.type)):
        raise DatasetError(f"reward column {settings.reward_col!r} has type {reward_col.type}; pass a numeric --reward-col")
    reward = scalar_column(reward_col).astype(np.float32)
    bad = ~np.isfinite(reward)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise DatasetError(
            f"reward column {settings.reward_col!r} holds {reward[i]} at episode {int(table['episode_index'][i].as_py())} frame {int(table['frame_index'][i].as_py())}; rewards must be finite"
        )
    labels_col = table[settings.adv_col]
    if not (pa.types.is_string(labels_col.type) or pa.types.is_large_string(labels_col.type)):
        raise DatasetError(f"label column {settings.adv_col!r} has type {labels_col.type}, not string; pass the right --adv-col")
    return DatasetColumns(
        episode=table["episode_index"].to_numpy(),
        frame=table["frame_index"].to_numpy(),
        task=table["task_index"].to_numpy(),
        human=human_mask(scalar_column(table[settings.human_col]), settings.human_col),
        reward=reward,
        labels=np.asarray(labels_col.to_numpy(zero_copy_only=False), dtype=object),
        file_rows=file_rows,
        signatures=signatures,
    )


def next_run_id(record: dict) -> str:
    return f"run-{len(record.get('runs', [])) + 1:04d}"


def check_safe_to_write(ds: LeRobotDataset, allow_original: bool) -> dict:
    record = read_lineage(ds.root)
    if record is None and not allow_original:
        raise UnsafeWriteError(
            f"{ds.root} has no copy lineage: it looks like an original dataset; label a copy made with `recap-label copy`, or pass --allow-original"
        )
    for path in ds.data_files:
        check_writable_target(ds.root, path)
    return record or {"tool": "recap-label", "format": 1, "iteration": 0, "parent": None, "source": None, "runs": []}


def tail_trap_warning(cols: DatasetColumns, result: LabelResult, lookahead: int) -> str | None:
    """Warn when positives pile up in the last N frames of failed episodes (zero bootstrap trap)."""
    groups = group_episodes(cols.episode, cols.frame)
    order = groups.order
    failed = cols.reward[order][groups.stops - 1] <= -0.5  # per episode: the last reward says failure
    if not failed.any():
        return None
    from_end = np.repeat(groups.stops, groups.lengths) - 1 - np.arange(order.size)
    auto = (result.rollout & ~cols.human)[order]
    tail = auto & np.repeat(failed, groups.lengths) & (from_end < lookahead)
    pos = result.positive[order]
    n_tail, n_auto = int(tail.sum()), int(auto.sum())
    if n_tail < 10 or n_auto == 0:
        return None
    tail_rate = pos[tail].mean()
    overall = pos[auto].mean()
    if tail_rate > max(2 * overall, 0.5):
        return (
            f"{100 * tail_rate:.0f} % of the autonomous frames in the last {lookahead} frames of failed episodes are positive "
            f"(overall {100 * overall:.0f} %): the zero tail bootstrap may be rewarding failures; compare with --tail-bootstrap last"
        )
    return None


def run_label(
    ds_root: Path,
    settings: Settings,
    rule: RuleSettings,
    source: ValueSource,
    *,
    dry_run: bool = False,
    recompute: bool = False,
    allow_original: bool = False,
    command: str = "label",
    on_episode=None,
) -> LabelOutcome:
    t0 = time.perf_counter()
    from recap_label.distributed import world_size

    dist = None
    if world_size() > 1:
        from recap_label.distributed import Dist

        dist = Dist()
        if dist.rank != 0:
            return _follow(ds_root, source, dist)
    try:
        return _lead(ds_root, settings, rule, source, dry_run, recompute, allow_original, command, on_episode, t0, dist)
    finally:
        if dist is not None:
            if not dist.plan_sent:
                dist.broadcast({"ok": False})  # release the other ranks
                dist.gather(None)
            dist.close()


def _follow(ds_root: Path, source: ValueSource, dist) -> None:
    """A non-zero rank: infer the episodes rank 0 assigns, into the shared sidecar parts."""
    plan = dist.broadcast(None)
    error = None
    try:
        if plan.get("ok"):
            ds = LeRobotDataset.open(ds_root)
            if hasattr(source, "bind"):
                source.bind(ds)
            if source.provenance() != plan["provenance"]:
                error = f"rank {dist.rank} was started with different settings than rank 0"
            else:
                partial = PartialValues(ds.root, plan["provenance"], restart=False)
                for ev in source.episode_values(ds, plan["assign"][dist.rank]):
                    partial.add(ev)
    except RecapError as exc:
        error = exc.message
    finally:
        dist.gather(error)
        dist.close()
    if not plan.get("ok"):
        raise RecapError(f"rank {dist.rank}: stopped because rank 0 stopped (see its message)")
    if error:
        raise RecapError(f"rank {dist.rank}: {error}")
    return None


def _lead(ds_root, settings, rule, source, dry_run, recompute, allow_original, command, on_episode, t0, dist) -> LabelOutcome:
    ds = LeRobotDataset.open(ds_root)
    if dry_run:
        if pending_commit(ds.root) is not None:
            raise BadInput(f"{ds.root} has an interrupted commit; run `recap-label verify` or `label` without --dry-run to complete it first")
        return _label_locked(ds, settings, rule, source, dry_run, recompute, allow_original, on_episode, t0, note=None, dist=dist)
    if read_lineage(ds.root) is None and not allow_original:
        check_safe_to_write(ds, allow_original)  # refuses before anything (even a lock) is created
    with dataset_lock(ds.root, command):
        note = recover(ds.root)
        ds = LeRobotDataset.open(ds_root) if note else ds
        return _label_locked(ds, settings, rule, source, dry_run, recompute, allow_original, on_episode, t0, note, dist=dist)


def _label_locked(ds, settings, rule, source, dry_run, recompute, allow_original, on_episode, t0, note, dist=None) -> LabelOutcome:
    record = check_safe_to_write(ds, allow_original) if not dry_run else (read_lineage(ds.root) or {"runs": []})
    cols = read_dataset_columns(ds, settings)
    kinds = episode_kinds(cols.episode, cols.human)
    rollout_eps = [int(e) for e in kinds.ids[kinds.rollout]]
    rollout_rows = kinds.rollout_rows
    t_read = time.perf_counter()

    if hasattr(source, "bind"):
        source.bind(ds)  # the model's camera slots depend on the dataset
    if dist is not None:
        by_episode, values_from = _distribute_inference(ds, source, rollout_eps, recompute, dist)
    else:
        by_episode, values_from = gather_values(ds, source, rollout_eps, recompute=recompute, on_episode=on_episode)
    value = assemble_values(cols.episode, cols.frame, rollout_rows, by_episode, source.name)
    t_values = time.perf_counter()

    result = apply_rule(cols.episode, cols.frame, cols.human, cols.reward, value, rule, task=cols.task)
    new_labels = result.labels(cols.labels)
    b = breakdown(cols.episode, cols.human, new_labels)
    changed = cols.labels != new_labels  # only rollout rows can change
    moves, counts = np.unique(_shown(cols.labels[changed]) + "->" + new_labels[changed].astype(str), return_counts=True)
    transitions = dict(zip(moves.tolist(), counts.tolist()))
    share_per_task = {}
    auto = rollout_rows & ~cols.human
    for t in np.unique(cols.task[auto]):
        sel = auto & (cols.task == t)
        share_per_task[str(int(t))] = float(result.positive[sel].mean()) if sel.any() else None
    warnings = [w for w in [tail_trap_warning(cols, result, rule.lookahead)] if w]
    notes = [note] if note else []
    t_rule = time.perf_counter()

    run_id = next_run_id(record)
    outcome = LabelOutcome(
        ds.root, None if dry_run else run_id, dry_run, values_from, result.thresholds, result.pool_sizes, b,
        transitions, share_per_task, 0, warnings, notes,
    )
    if dry_run:
        outcome.files_rewritten = sum(1 for _ in _changed_files(cols, changed))
        outcome.timings = {"read": t_read - t0, "values": t_values - t_read, "rule": t_rule - t_values, "total": time.perf_counter() - t0}
        return outcome

    txn = Transaction(ds.root, run_id)
    rewritten = []
    prior_files, prior_labels = [], []
    for path, (lo, hi) in _changed_files(cols, changed):
        txn.stage_labels(path, settings.adv_col, new_labels[lo:hi], signature=cols.signatures.get(path))
        rel = path.relative_to(ds.root).as_posix()
        rewritten.append(rel)
        prior_files += [rel] * (hi - lo)
        prior_labels += list(cols.labels[lo:hi])
    run_dir = RUNS_DIR / run_id
    info_path = ds.root / "meta" / "info.json"
    info_prior = None
    if settings.adv_col not in ds.features:
        info_prior = info_path.read_bytes()
        info = dict(ds.info)
        info["features"] = {**ds.features, settings.adv_col: {"dtype": "string", "shape": [1], "names": None}}
        txn.stage_bytes(ds.root / run_dir / "info.json.prior", info_prior)
        txn.stage_bytes(info_path, (json.dumps(info, indent=4, ensure_ascii=False) + "\n").encode())
    txn.stage_table(ds.root / run_dir / "prior_labels.parquet", pa.table({"file": pa.array(prior_files, pa.string()), "label": pa.array(prior_labels, pa.string())}))
    settings_json = {**rule.__dict__, "human_col": settings.human_col, "reward_col": settings.reward_col, "adv_col": settings.adv_col}
    provenance = source.provenance()
    sel = rollout_rows
    txn.stage_table(ds.root / SIDECAR, sidecar_table(cols.episode[sel], cols.frame[sel], value[sel], result.advantage[sel], new_labels[sel], provenance, settings_json))
    run = {
        "id": run_id, "kind": "label", "time": now_iso(), "settings": settings_json, "value_source": provenance,
        "values_from": values_from, "thresholds": result.thresholds, "pool_sizes": result.pool_sizes,
        "counts": b.to_json(), "share": b.autonomous_positive_share, "share_per_task": share_per_task,
        "transitions": outcome.transitions, "files_rewritten": rewritten,
        # content hash of each new file: rollback refuses if anyone rewrote it since (a plain
        # `cp -r`/move of the dataset keeps it valid, unlike mtime or inode)
        "file_sha256_after": {s.target.relative_to(ds.root).as_posix(): sha256_file(s.staged) for s in txn.staged if s.target.relative_to(ds.root).as_posix() in rewritten},
        "prior_labels": (run_dir / "prior_labels.parquet").as_posix(),
        "info_json_prior": (run_dir / "info.json.prior").as_posix() if info_prior is not None else None,
        "demo_labels_sha256": demo_labels_digest(cols.episode, cols.human, cols.labels),
        "recovered": note, "duration_s": round(time.perf_counter() - t0, 3),
    }
    record = {**record, "runs": [*record.get("runs", []), run]}
    txn.stage_json(ds.root / LINEAGE_FILE, record)
    t_stage = time.perf_counter()
    txn.commit()
    if not source.cheap:
        discard_partial(ds.root)
    outcome.files_rewritten = len(rewritten)
    outcome.timings = {"read": t_read - t0, "values": t_values - t_read, "rule": t_rule - t_values, "stage": t_stage - t_rule, "commit": time.perf_counter() - t_stage, "total": time.perf_counter() - t0}
    return outcome


def _distribute_inference(ds: LeRobotDataset, source: ValueSource, episodes: list[int], recompute: bool, dist) -> tuple[dict, str]:
    """Rank 0: split the episodes still to infer across ranks, infer its own share, wait for all."""
    from recap_label.distributed import assign_by_frames
    from recap_label.values import cached_values

    provenance = source.provenance()
    if source.cheap or cached_values(ds, source, episodes, recompute) is not None:
        dist.broadcast({"ok": True, "assign": [[] for _ in range(dist.world)], "provenance": provenance})
        dist.gather(None)
        return gather_values(ds, source, episodes, recompute=False)
    partial = PartialValues(ds.root, provenance, restart=recompute)
    done = partial.done()
    assign = assign_by_frames({e: ds.episodes[e].length for e in episodes if e not in done}, dist.world)
    dist.broadcast({"ok": True, "assign": assign, "provenance": provenance})
    error = None
    try:
        for ev in source.episode_values(ds, assign[0]):
            partial.add(ev)
    except RecapError as exc:
        error = exc.message
    errors = dist.gather(error)
    failed = [(r, e) for r, e in enumerate(errors) if e]
    if failed:
        r, e = failed[0]
        raise RecapError(f"rank {r}: {e}" if r else e)
    sizes = ", ".join(f"rank {r}: {len(a)}" for r, a in enumerate(assign))
    return {e: partial.read(e) for e in episodes}, f"inference on {dist.world} ranks (episodes {sizes}; {len(done)} already done)"


def _shown(labels: np.ndarray) -> np.ndarray:
    """Labels as str for the transition table; a null label reads "null"."""
    return np.where(labels == None, "null", labels).astype(str)  # noqa: E711 (elementwise)


def _changed_files(cols: DatasetColumns, changed: np.ndarray):
    """(file, (lo, hi)) for every data file with a changed row."""
    lo = 0
    for path, n in cols.file_rows:
        hi = lo + n
        if changed[lo:hi].any():
            yield path, (lo, hi)
        lo = hi
