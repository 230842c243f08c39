"""The Stage 5 labeling rule, exactly, in vectorized NumPy (no per-frame Python loop).

For each rollout episode (at least one intervention = 0 frame) of length T, with
r = reward_label, V = value, N = lookahead and no discount:

    A_t = sum(r[t : min(t+N, T)]) + (V[t+N] if t+N < T else B) - V[t]

B = 0 (the reference code, `tail_bootstrap="zero"`) or V[T-1] (what its docs claim,
`tail_bootstrap="last"`). A is stored as float32 like the reference. The threshold is
`numpy.percentile(A over the autonomous frames of rollout episodes, 100 - 100*ratio)`
(linear), over one global pool by default or per task. Intervention frames of rollouts
are positive; autonomous frames are positive iff A >= threshold. Demo episodes (every
frame intervention = 1) are not labeled at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from recap_label.config import MAX_LOOKAHEAD, MIN_RATIO, SCOPES, TAIL_RULES
from recap_label.errors import BadInput
from recap_label.lerobot.columns import EpisodeKinds, LabelColumns, episode_kinds, joined_label_bytes
from recap_label.lerobot.dataset import EpisodeGroups, group_episodes


@dataclass(frozen=True)
class RuleSettings:
    lookahead: int = 50
    positive_ratio: float = 0.3
    tail_bootstrap: str = "zero"
    threshold_scope: str = "global"

    def __post_init__(self):
        if isinstance(self.lookahead, bool) or int(self.lookahead) != self.lookahead or self.lookahead < 1:
            raise BadInput(f"--lookahead must be an integer >= 1, got {self.lookahead}")
        if self.lookahead > MAX_LOOKAHEAD:  # numpy's int64 arithmetic would overflow; no episode is this long
            raise BadInput(
                f"--lookahead {self.lookahead} is too large; pass a number of frames up to {MAX_LOOKAHEAD:,} (beyond "
                f"an episode's end N means its whole rest)"
            )
        if not (0.0 < float(self.positive_ratio) <= 1.0):
            raise BadInput(
                f"--positive-ratio must be in (0, 1], got {self.positive_ratio} (for --top-percent: (0, 100])"
            )
        if float(self.positive_ratio) < MIN_RATIO:
            raise BadInput(
                f"--positive-ratio {self.positive_ratio} is below {MIN_RATIO:g}: the percentile 100 - 100*R is then "
                f"100 in float64 and "
                "the ratio has no effect; pass a larger ratio"
            )
        if self.tail_bootstrap not in TAIL_RULES:
            raise BadInput(f"--tail-bootstrap must be one of {', '.join(TAIL_RULES)}, got {self.tail_bootstrap!r}")
        if self.threshold_scope not in SCOPES:
            raise BadInput(f"--threshold-scope must be one of {', '.join(SCOPES)}, got {self.threshold_scope!r}")

    @property
    def percentile(self) -> float:
        return 100.0 - 100.0 * float(self.positive_ratio)


def resolve_ratio(positive_ratio: float | None, top_percent: float | None) -> float:
    """--positive-ratio R and --top-percent P are one knob (P = 100 R)."""
    if positive_ratio is not None and top_percent is not None:
        if not np.isclose(positive_ratio * 100.0, top_percent, rtol=0, atol=1e-9):
            raise BadInput(
                f"--positive-ratio {positive_ratio} and --top-percent {top_percent} disagree; give one of them (P = "
                f"100 x R)"
            )
    if positive_ratio is not None:
        return float(positive_ratio)
    if top_percent is not None:
        if not (0.0 < top_percent <= 100.0):
            raise BadInput(f"--top-percent must be in (0, 100], got {top_percent}")
        return float(top_percent) / 100.0
    return 0.3


@dataclass
class LabelResult:
    """Per-row results in the input row order."""

    advantage: np.ndarray  # float32, NaN outside rollout episodes
    rollout: np.ndarray  # bool: row belongs to a rollout episode (and gets a label)
    positive: np.ndarray  # bool: label is positive (meaningful where rollout)
    thresholds: dict[str, float | None]  # "global" or "task <i>" -> threshold
    pool_sizes: dict[str, int]

    def labels(self, existing: np.ndarray) -> np.ndarray:
        """The new label column: rollout rows relabeled, demo rows keep `existing`."""
        out = np.asarray(existing, dtype=object).copy()
        out[self.rollout] = np.where(self.positive[self.rollout], "positive", "negative")
        return out


def episode_advantages(
    starts: np.ndarray, stops: np.ndarray, reward: np.ndarray, value: np.ndarray, lookahead: int, tail_bootstrap: str
) -> np.ndarray:
    """A for rows already sorted by (episode, frame); episodes are [starts[i], stops[i])."""
    n = reward.size
    lengths = stops - starts
    end = np.repeat(stops, lengths)  # exclusive end of each row's episode
    pos = np.arange(n)
    prefix = np.concatenate([[0.0], np.cumsum(reward, dtype=np.float64)])
    window_end = np.minimum(pos + lookahead, end)
    reward_sum = prefix[window_end] - prefix[pos]
    inside = pos + lookahead < end
    v = value.astype(np.float64)
    if tail_bootstrap == "zero":
        tail = np.zeros(n)
    else:
        tail = v[end - 1]
    boot = np.where(inside, v[np.minimum(pos + lookahead, n - 1)], tail)
    return (reward_sum + boot - v).astype(np.float32)


def apply_rule(
    episode: np.ndarray,
    frame: np.ndarray,
    human: np.ndarray,
    reward: np.ndarray,
    value: np.ndarray,
    settings: RuleSettings,
    task: np.ndarray | None = None,
    *,
    groups: EpisodeGroups | None = None,
    kinds: EpisodeKinds | None = None,
) -> LabelResult:
    """Label every row. `value` may be NaN on demo rows (they are never inferred).
    `groups` / `kinds`: the episode grouping and demo/rollout split, when already computed."""
    groups = group_episodes(episode, frame) if groups is None else groups
    kinds = episode_kinds(episode, human) if kinds is None else kinds
    order = groups.order
    human_s = np.asarray(human, dtype=bool)[order]
    reward_s = np.asarray(reward, dtype=np.float32)[order]
    value_s = np.asarray(value, dtype=np.float64)[order]
    rollout_s = kinds.rollout_rows[order]

    adv_s = np.full(reward_s.size, np.nan, dtype=np.float32)
    if rollout_s.any():
        sel = rollout_s
        ro_lengths = groups.lengths[rollout_s[groups.starts]]
        ro_stops = np.cumsum(ro_lengths)
        ro_starts = ro_stops - ro_lengths
        adv_s[sel] = episode_advantages(
            ro_starts, ro_stops, reward_s[sel], value_s[sel], settings.lookahead, settings.tail_bootstrap
        )

    auto_s = rollout_s & ~human_s
    positive_s = rollout_s & human_s
    thresholds: dict[str, float | None] = {}
    pools: dict[str, int] = {}
    if settings.threshold_scope == "global":
        pool_keys = {"global": auto_s}
    else:
        task_s = np.asarray(task)[order]
        pool_keys = {f"task {int(t)}": auto_s & (task_s == t) for t in np.unique(task_s[rollout_s])}
    for name, members in pool_keys.items():
        pools[name] = int(members.sum())
        if not members.any():
            thresholds[name] = None
            continue
        threshold = np.percentile(adv_s[members], settings.percentile)
        thresholds[name] = float(threshold)
        positive_s |= members & (adv_s >= threshold)

    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return LabelResult(adv_s[inverse], rollout_s[inverse], positive_s[inverse], thresholds, pools)


def apply_rule_to(cols: LabelColumns, value: np.ndarray, settings: RuleSettings) -> LabelResult:
    """apply_rule on a dataset's columns, reusing their episode grouping."""
    return apply_rule(
        cols.episode,
        cols.frame,
        cols.human,
        cols.reward,
        value,
        settings,
        task=cols.task,
        groups=cols.groups,
        kinds=cols.kinds,
    )


def needed_rows(cols: LabelColumns, lookahead: int, tail_bootstrap: str) -> np.ndarray:
    """Per row: is its V used by the rule? An autonomous rollout frame t (its A decides its label
    and sets the threshold), the lookahead endpoint t+N of one inside its episode, and with
    `tail_bootstrap` "last" the episode's last frame where t+N runs past the end. Intervention
    frames that are none of these are labeled positive whatever V says (`--infer needed`)."""
    groups, order = cols.groups, cols.groups.order
    rollout_s = cols.kinds.rollout_rows[order]
    auto_s = rollout_s & ~np.asarray(cols.human, dtype=bool)[order]
    end = np.repeat(groups.stops, groups.lengths)  # exclusive end of each sorted row's episode
    pos = np.flatnonzero(auto_s)
    need_s = auto_s.copy()
    ahead = pos + lookahead
    inside = ahead < end[pos]
    need_s[ahead[inside]] = True
    if tail_bootstrap == "last":
        need_s[end[pos[~inside]] - 1] = True
    out = np.empty_like(need_s)
    out[order] = need_s
    return out


# -- what the rule guarantees, and the traps it has ------------------------------------------


def demo_labels_digest(
    episode: np.ndarray, human: np.ndarray, labels: np.ndarray, kinds: EpisodeKinds | None = None
) -> str:
    """sha256 of the labels of demo episodes, in (episode, row) order: they must never change."""
    kinds = episode_kinds(episode, human) if kinds is None else kinds
    demo_rows = ~kinds.rollout_rows
    order = np.argsort(episode[demo_rows], kind="stable")
    ordered = labels[demo_rows][order]
    # each label's bytes followed by NUL (a null as \x01), hashed from the joined bytes, not label by label
    joined = joined_label_bytes(pa.array(ordered, pa.string())) + b"\0" if ordered.size else b""
    return hashlib.sha256(joined).hexdigest()


def long_lookahead_warning(cols: LabelColumns, lookahead: int) -> str | None:
    """N past the end of every rollout: each advantage is then the whole rest of its episode."""
    lengths = cols.groups.lengths[cols.kinds.rollout] if cols.kinds.rollout.any() else cols.groups.lengths
    longest = int(lengths.max()) if lengths.size else 0
    if longest and lookahead >= longest:
        return (
            f"--lookahead {lookahead} is not shorter than any rollout episode (longest: {longest} frames): every "
            f"advantage "
            f"sums the rewards to the episode's end; N counts frames (at 30 fps, 50 = 1.7 s)"
        )
    return None


def tail_trap_warning(cols: LabelColumns, result: LabelResult, lookahead: int) -> str | None:
    """Warn when positives pile up in the last N frames of failed episodes (zero bootstrap trap)."""
    groups = cols.groups
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
            f"{100 * tail_rate:.0f} % of the autonomous frames in the last {lookahead} frames of failed episodes are "
            f"positive "
            f"(overall {100 * overall:.0f} %): the zero tail bootstrap may be rewarding failures; compare with "
            f"--tail-bootstrap last"
        )
    return None


def tied_at_threshold(advantage: np.ndarray, labels: np.ndarray, thresholds: list[float]) -> int:
    """Positive frames whose advantage equals a threshold exactly, beyond the one the percentile
    lands on: ties go positive (as in the reference), so the share can exceed the target by them."""
    return int(
        sum(max(np.count_nonzero((advantage == np.float32(t)) & (labels == "positive")) - 1, 0) for t in thresholds)
    )


def label_transitions(before: np.ndarray, after: np.ndarray) -> dict[str, int]:
    """ "old->new": frames, over the rows whose label changes (a null label reads "null")."""
    changed = before != after
    if not changed.any():
        return {}
    pairs = pa.table(
        {"b": pa.array(before[changed], pa.string()).fill_null("null"), "a": pa.array(after[changed], pa.string())}
    )
    counted = pairs.group_by(["b", "a"]).aggregate([([], "count_all")]).to_pylist()
    return dict(sorted((f"{r['b']}->{r['a']}", int(r["count_all"])) for r in counted))


def share_per_task(cols: LabelColumns, result: LabelResult) -> dict[str, float | None]:
    """Positive share of the autonomous rollout frames of each task."""
    auto = cols.rollout_rows & ~cols.human
    out = {}
    for t in np.unique(cols.task[auto]):
        sel = auto & (cols.task == t)
        out[str(int(t))] = float(result.positive[sel].mean()) if sel.any() else None
    return out
