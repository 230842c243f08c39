"""Is the value model any good? The value-model section of `verify` and of the end-of-label
report, from V of every rollout frame (the values sidecar, or the label run's own V).

numpy only: `label` runs it where polars is not installed.

- Spearman rank correlation of V with the Monte-Carlo value column (`value_label` by default,
  `--mc-value-col`) over all frames of rollout episodes; skipped with a note when absent.
- Success-vs-failure separation: AUC of each rollout episode's mean V over its last N frames
  (N = the run's lookahead); success is read from the reward column's last frame
  (`reward_label`: 0 = success, -1 = failure, the RECAP convention; > -0.5 counts as success).
- V's spread per episode (std), the share of frames saturated at the first or last bin (V within
  half a bin of the support's ends, -1 and 0: the sidecar keeps V, not the bin distribution, and
  only a distribution with nearly all its mass in an end bin has its mean there), and the
  frames tied exactly at the threshold.

Warnings: V nearly constant (std under STD_FLOOR), Spearman under SPEARMAN_FLOOR, and positives
piling up in the last N frames of any episode (the zero tail bootstrap makes A = sum(r) - V[t]
there, so a near-flat model labels every tail frame positive).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from recap_label.rule import tied_at_threshold
from recap_label.stats import auc, spearman

STD_FLOOR = 0.01  # V's std over all rollout frames under this: the model barely tells frames apart
SPEARMAN_FLOOR = 0.3  # rank correlation with the Monte-Carlo value under this: V orders frames poorly
SUPPORT = (-1.0, 0.0)  # the value head's bins span [-1, 0]
HALF_BIN = 0.5 * (SUPPORT[1] - SUPPORT[0]) / 200  # half a bin of the 201-bin head
TAIL_MIN_FRAMES = 10  # fewer autonomous tail frames than this: no pile-up warning
TAIL_EPISODE_SHARE = 0.9  # one episode's tail frames positive over this share (and twice the overall): pile-up


@dataclass
class ValueModelSection:
    frames: int
    v_mean: float
    v_std: float
    episode_std: dict[str, float]  # min / median / max over rollout episodes
    saturated_first_bin: float  # share of frames
    saturated_last_bin: float
    ties_at_threshold: int
    spearman_mc: float | None
    mc_column: str
    auc_success: float | None
    tail_frames: int  # N: the last N frames of each episode
    successes: int
    failures: int
    tail_positives: int  # autonomous positives in the last N frames of an episode
    positives: int  # all autonomous positives
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _from_end(episode: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: frames to its episode's end (0 = last frame); episode ids and each row's position."""
    ids, inverse = np.unique(episode, return_inverse=True)
    last = np.full(ids.size, -1, dtype=np.int64)
    np.maximum.at(last, inverse, frame.astype(np.int64))
    return last[inverse] - frame, ids, inverse


def assess(
    *,
    episode: np.ndarray,
    frame: np.ndarray,
    human: np.ndarray,
    value: np.ndarray,
    labels: np.ndarray,
    advantage: np.ndarray | None,
    thresholds: list[float],
    lookahead: int,
    mc_value: np.ndarray | None,
    mc_column: str,
    last_reward: np.ndarray | None,
) -> ValueModelSection | None:
    """All arrays over the frames of rollout episodes. `last_reward`: per row, the reward of its
    episode's last frame (None: no success signal)."""
    episode, frame = np.asarray(episode), np.asarray(frame)
    value = np.asarray(value, dtype=np.float64)
    if value.size == 0:
        return None
    human, labels = np.asarray(human, dtype=bool), np.asarray(labels, dtype=object)
    from_end, ids, inverse = _from_end(episode, frame)
    notes, warnings = [], []
    have = np.isfinite(value)
    if not have.all():  # `label --infer needed` left intervention frames that are no endpoint without V
        notes.append(
            f"V of {int(have.sum()):,} of {value.size:,} rollout frames (label --infer needed): this section covers "
            "those frames only"
        )
        episode, frame, human, value, labels, from_end = (
            a[have] for a in (episode, frame, human, value, labels, from_end)
        )
        advantage, mc_value, last_reward = (
            None if a is None else np.asarray(a)[have] for a in (advantage, mc_value, last_reward)
        )
        if value.size == 0:
            return None
        ids, inverse = np.unique(episode, return_inverse=True)

    counts = np.bincount(inverse, minlength=ids.size)
    mean = np.bincount(inverse, weights=value, minlength=ids.size) / counts
    var = np.bincount(inverse, weights=(value - mean[inverse]) ** 2, minlength=ids.size) / counts
    ep_std = np.sqrt(var)
    v_std = float(value.std())

    rho = None
    if mc_value is None:
        notes.append(f"no {mc_column!r} column: Spearman against the Monte-Carlo value skipped (set --mc-value-col)")
    else:
        rho = spearman(value, mc_value)
        if rho is None:
            notes.append(f"Spearman against {mc_column!r} undefined (V or {mc_column!r} is constant)")

    tail = from_end < lookahead
    area = None
    successes = failures = 0
    if last_reward is None:
        notes.append("no success signal (reward column absent): success-vs-failure AUC skipped")
    else:
        ep_success = np.zeros(ids.size, dtype=bool)
        ep_success[inverse] = np.asarray(last_reward) > -0.5
        tail_mean = np.bincount(inverse, weights=value * tail, minlength=ids.size) / np.maximum(
            np.bincount(inverse, weights=tail, minlength=ids.size), 1
        )
        successes, failures = int(ep_success.sum()), int((~ep_success).sum())
        area = auc(tail_mean, ep_success)
        if area is None:
            notes.append(
                f"success-vs-failure AUC needs both kinds of episode ({successes} successful, {failures} failed)"
            )

    auto = ~human
    positive = labels == "positive"
    pos_auto = positive & auto
    tail_auto = tail & auto
    n_tail, n_pos = int(tail_auto.sum()), int(pos_auto.sum())
    tail_pos = int((pos_auto & tail).sum())

    if v_std < STD_FLOOR:
        warnings.append(
            f"V is nearly constant (std {v_std:.4g} < {STD_FLOOR}): the value model barely tells frames apart; check "
            f"the checkpoint and the cameras"
        )
    if rho is not None and rho < SPEARMAN_FLOOR:
        warnings.append(
            f"V's Spearman correlation with {mc_column!r} is {rho:.2f} (< {SPEARMAN_FLOOR}): V orders the frames poorly"
        )
    if n_tail >= TAIL_MIN_FRAMES and auto.any():
        tail_rate, overall = tail_pos / n_tail, n_pos / int(auto.sum())
        bar, episode_bar = max(2 * overall, 0.5), max(2 * overall, TAIL_EPISODE_SHARE)
        # per episode too: a pile-up on the successful episodes alone can leave the pooled share under the bar
        ep_tail = np.bincount(inverse, weights=tail_auto, minlength=ids.size)
        ep_tail_pos = np.bincount(inverse, weights=pos_auto & tail, minlength=ids.size)
        piled = ids[(ep_tail >= TAIL_MIN_FRAMES) & (ep_tail_pos > episode_bar * ep_tail)]
        if tail_rate > bar or piled.size:
            where = (
                f"; in {piled.size} of {ids.size} rollout episodes over {100 * episode_bar:.0f} %, e.g. "
                f"{', '.join(map(str, piled[:3]))}"
                if piled.size
                else ""
            )
            warnings.append(
                f"{tail_pos} of {n_pos} autonomous positives are in the last {lookahead} frames of an episode "
                f"({100 * tail_rate:.0f} % of those frames "
                f"are positive, {100 * overall:.0f} % overall{where}): the zero tail bootstrap makes A = sum(r) - "
                f"V[t] there; compare with --tail-bootstrap last"
            )
    ties = (
        tied_at_threshold(np.asarray(advantage, dtype=np.float32), labels, thresholds)
        if advantage is not None and thresholds
        else 0
    )
    return ValueModelSection(
        frames=int(value.size),
        v_mean=float(value.mean()),
        v_std=v_std,
        episode_std={"min": float(ep_std.min()), "median": float(np.median(ep_std)), "max": float(ep_std.max())},
        saturated_first_bin=float(np.mean(value <= SUPPORT[0] + HALF_BIN)),
        saturated_last_bin=float(np.mean(value >= SUPPORT[1] - HALF_BIN)),
        ties_at_threshold=ties,
        spearman_mc=rho,
        mc_column=mc_column,
        auc_success=area,
        tail_frames=lookahead,
        successes=successes,
        failures=failures,
        tail_positives=tail_pos,
        positives=n_pos,
        notes=notes,
        warnings=warnings,
    )


def last_frame_reward(episode: np.ndarray, frame: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """Per row, the reward on its episode's last frame."""
    from_end, ids, inverse = _from_end(np.asarray(episode), np.asarray(frame))
    last = np.zeros(ids.size, dtype=np.float64)
    last[inverse[from_end == 0]] = np.asarray(reward, dtype=np.float64)[from_end == 0]
    return last[inverse]


def _keys(episode: np.ndarray, frame: np.ndarray) -> np.ndarray:
    return (np.asarray(episode, dtype=np.int64) << 32) | np.asarray(frame, dtype=np.int64)


def section_of_dataset(ds, settings, run, cols=None) -> tuple[ValueModelSection | None, str | None]:
    """The section from the values sidecar and the dataset's columns (`cols`: the LabelColumns
    already read, else read here); (None, why) when there is no sidecar or it does not hold the
    labels on disk (a rolled-back run's)."""
    from recap_label.lerobot.columns import read_label_columns, scalar_column, shared_strings
    from recap_label.values.cache import read_sidecar

    if run is None:
        return None, None
    side = read_sidecar(ds.root)
    if side is None:
        return None, "value model: no values sidecar (labels from an older recap-label?); section skipped"
    table = side[1]
    if cols is None:
        cols = read_label_columns(ds, human_col=settings.human_col, adv_col=settings.adv_col)
    names = ds.schema(ds.data_files[0]).names
    extra = [c for c in (settings.mc_value_col, settings.reward_col) if c in names]
    more = ds.read_columns(extra) if extra else None  # rows in the order of cols (both: data files in order)
    row_keys = _keys(cols.episode, cols.frame)
    side_keys = _keys(table["episode_index"].to_numpy(), table["frame_index"].to_numpy())
    order = np.argsort(row_keys)
    pos = np.searchsorted(row_keys, side_keys, sorter=order)
    pos = np.minimum(pos, row_keys.size - 1)
    rows = order[pos]
    side_labels = shared_strings(table["label"])
    if not np.array_equal(row_keys[rows], side_keys) or not np.array_equal(cols.labels[rows], side_labels):
        return (
            None,
            "value model: the values sidecar does not hold the labels on disk (from a rolled-back run); section "
            "skipped",
        )
    mc = last = None
    if more is not None:
        if settings.mc_value_col in extra:
            mc = scalar_column(more[settings.mc_value_col]).astype(np.float64)[rows]
        if settings.reward_col in extra:
            reward = scalar_column(more[settings.reward_col]).astype(np.float64)[rows]
            last = last_frame_reward(table["episode_index"].to_numpy(), table["frame_index"].to_numpy(), reward)
    thresholds = [t for t in (run.thresholds or {}).values() if t is not None]
    section = assess(
        episode=table["episode_index"].to_numpy(),
        frame=table["frame_index"].to_numpy(),
        human=cols.human[rows],
        value=table["value"].to_numpy(),
        labels=side_labels,
        advantage=table["advantage"].to_numpy(),
        thresholds=thresholds,
        lookahead=int(run.settings.lookahead),
        mc_value=mc,
        mc_column=settings.mc_value_col,
        last_reward=last,
    )
    return section, None


def section_of_plan(plan, settings, ds) -> ValueModelSection | None:
    """The section of a label run, from the V it just used (before or without a sidecar)."""
    from recap_label.lerobot.columns import scalar_column

    cols, sel = plan.cols, plan.cols.rollout_rows
    mc = None
    if settings.mc_value_col in ds.schema(ds.data_files[0]).names:
        mc = np.concatenate(
            [
                scalar_column(ds.read_columns([settings.mc_value_col], [p])[settings.mc_value_col])
                for p, _ in cols.file_rows
            ]
        ).astype(np.float64)[sel]
    last = last_frame_reward(cols.episode[sel], cols.frame[sel], cols.reward[sel]) if cols.reward is not None else None
    thresholds = [t for t in plan.result.thresholds.values() if t is not None]
    return assess(
        episode=cols.episode[sel],
        frame=cols.frame[sel],
        human=cols.human[sel],
        value=plan.value[sel],
        labels=plan.new_labels[sel],
        advantage=plan.result.advantage[sel],
        thresholds=thresholds,
        lookahead=plan.settings.lookahead,
        mc_value=mc,
        mc_column=settings.mc_value_col,
        last_reward=last,
    )
