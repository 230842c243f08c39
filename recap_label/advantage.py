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

from dataclasses import dataclass

import numpy as np

from recap_label.dataset import group_episodes
from recap_label.errors import BadInput

TAIL_RULES = ("zero", "last")
SCOPES = ("global", "task")


@dataclass(frozen=True)
class RuleSettings:
    lookahead: int = 50
    positive_ratio: float = 0.3
    tail_bootstrap: str = "zero"
    threshold_scope: str = "global"

    def __post_init__(self):
        if isinstance(self.lookahead, bool) or int(self.lookahead) != self.lookahead or self.lookahead < 1:
            raise BadInput(f"--lookahead must be an integer >= 1, got {self.lookahead}")
        if not (0.0 < float(self.positive_ratio) <= 1.0):
            raise BadInput(f"--positive-ratio must be in (0, 1], got {self.positive_ratio} (for --top-percent: (0, 100])")
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
                f"--positive-ratio {positive_ratio} and --top-percent {top_percent} disagree; give one of them (P = 100 x R)"
            )
    if positive_ratio is not None:
        return float(positive_ratio)
    if top_percent is not None:
        if not (0.0 < top_percent <= 100.0):
            raise BadInput(f"--top-percent must be in (0, 100], got {top_percent}")
        return float(top_percent) / 100.0
    return 0.3


@dataclass(frozen=True)
class EpisodeKinds:
    """Demo vs rollout, the rule's step 1: an episode is a rollout iff it has an autonomous frame."""

    ids: np.ndarray  # episode ids, sorted
    inverse: np.ndarray  # row -> position in ids
    rollout: np.ndarray  # bool per episode id

    @property
    def rollout_rows(self) -> np.ndarray:
        return self.rollout[self.inverse]


def episode_kinds(episode: np.ndarray, human: np.ndarray) -> EpisodeKinds:
    ids, inverse = np.unique(np.asarray(episode), return_inverse=True)
    autonomous = np.bincount(inverse, weights=~np.asarray(human, dtype=bool), minlength=ids.size)
    return EpisodeKinds(ids, inverse, autonomous > 0)


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
) -> LabelResult:
    """Label every row. `value` may be NaN on demo rows (they are never inferred)."""
    groups = group_episodes(episode, frame)
    order = groups.order
    human_s = np.asarray(human, dtype=bool)[order]
    reward_s = np.asarray(reward, dtype=np.float32)[order]
    value_s = np.asarray(value, dtype=np.float64)[order]
    rollout_s = episode_kinds(episode, human).rollout_rows[order]

    adv_s = np.full(reward_s.size, np.nan, dtype=np.float32)
    if rollout_s.any():
        sel = rollout_s
        ro_lengths = groups.lengths[rollout_s[groups.starts]]
        ro_stops = np.cumsum(ro_lengths)
        ro_starts = ro_stops - ro_lengths
        adv_s[sel] = episode_advantages(ro_starts, ro_stops, reward_s[sel], value_s[sel], settings.lookahead, settings.tail_bootstrap)

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
