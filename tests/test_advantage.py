"""The labeling rule: vectorized NumPy against a plain-Python transcription of the reference loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from recap_label.rule import RuleSettings, apply_rule, resolve_ratio
from recap_label.errors import BadInput


def reference_labels(episodes, lookahead, top_percent, tail="zero", per_task=False):
    """Transcription of label_advantage_from_vlm.py's passes 3–5 (one Python loop per frame)."""
    advantages, pools = {}, {}
    for ep, rows in episodes.items():
        human = [r[1] for r in rows]
        if all(human):
            continue
        T = len(rows)
        r = np.array([x[2] for x in rows], dtype=np.float32)
        V = [x[3] for x in rows]
        for t in range(T):
            reward_sum = float(np.sum(r[t : min(t + lookahead, T)], dtype=np.float64))
            boot = V[t + lookahead] if t + lookahead < T else (0.0 if tail == "zero" else V[T - 1])
            a = np.float32(reward_sum + boot - V[t])
            advantages[(ep, t)] = a
            if not human[t]:
                pools.setdefault(rows[t][4] if per_task else "global", []).append(a)
    thresholds = {k: np.percentile(np.array(v, dtype=np.float32), 100.0 - top_percent) for k, v in pools.items()}
    labels = {}
    for ep, rows in episodes.items():
        if all(r[1] for r in rows):
            continue
        for t, row in enumerate(rows):
            key = row[4] if per_task else "global"
            labels[(ep, t)] = "positive" if row[1] or advantages[(ep, t)] >= thresholds[key] else "negative"
    return labels


def flatten(episodes, rng):
    rows = [(ep, t, *row) for ep, rs in episodes.items() for t, row in enumerate(rs)]
    perm = rng.permutation(len(rows))  # rows arrive in any order: grouping is by episode_index
    rows = [rows[i] for i in perm]
    ep = np.array([r[0] for r in rows])
    fr = np.array([r[1] for r in rows])
    human = np.array([r[3] for r in rows], dtype=bool)
    reward = np.array([r[4] for r in rows], dtype=np.float32)
    value = np.array([r[5] for r in rows])
    task = np.array([r[6] for r in rows])
    return ep, fr, human, reward, value, task


def random_episodes(rng, n_eps, max_len, demo_share=0.2, n_tasks=2):
    episodes = {}
    for e in range(n_eps):
        T = int(rng.integers(1, max_len + 1))
        demo = rng.random() < demo_share
        human = np.ones(T, bool) if demo else rng.random(T) < 0.3
        if not demo and human.all():
            human[rng.integers(T)] = False
        success = rng.random() < 0.5
        r = np.full(T, -1.0 / T, np.float32)
        r[-1] = 0.0 if success else -1.0
        V = rng.uniform(-1, 0, T)
        task = int(rng.integers(n_tasks))
        episodes[e] = [(e, bool(h), float(x), float(v), task) for h, x, v in zip(human, r, V)]
    return {e: [(e, h, x, v, task) for (_, h, x, v, task) in rows] for e, rows in episodes.items()}


def to_ref(episodes):
    return {e: [(r[0], r[1], r[2], r[3], r[4]) for r in rows] for e, rows in episodes.items()}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lookahead=st.integers(1, 12),
    top=st.sampled_from([10.0, 30.0, 50.0, 99.0, 100.0]),
    tail=st.sampled_from(["zero", "last"]),
    scope=st.sampled_from(["global", "task"]),
)
def test_matches_plain_python_transcription(seed, lookahead, top, tail, scope):
    rng = np.random.default_rng(seed)
    episodes = random_episodes(rng, int(rng.integers(1, 8)), 30)
    ref = reference_labels(to_ref(episodes), lookahead, top, tail, per_task=scope == "task")
    ep, fr, human, reward, value, task = flatten(episodes, rng)
    res = apply_rule(ep, fr, human, reward, value, RuleSettings(lookahead, top / 100, tail, scope), task=task)
    labels = res.labels(np.full(ep.size, "keep", dtype=object))
    for i in range(ep.size):
        key = (int(ep[i]), int(fr[i]))
        assert labels[i] == ref.get(key, "keep"), (key, labels[i], ref.get(key))


def test_reference_counts_distinct_advantages():
    """10 rollouts, 21,286 frames, 6,968 intervention: exactly 4,296 positive / 10,022 negative."""
    rng = np.random.default_rng(5)
    lengths = np.full(10, 21286 // 10)
    lengths[: 21286 % 10] += 1
    ep = np.repeat(np.arange(10), lengths)
    fr = np.concatenate([np.arange(n) for n in lengths])
    human = np.zeros(ep.size, bool)
    human[rng.choice(ep.size, 6968, replace=False)] = True
    reward = np.concatenate([np.r_[np.full(n - 1, -1 / n), 0.0] for n in lengths]).astype(np.float32)
    value = rng.uniform(-1, 0, ep.size)
    res = apply_rule(ep, fr, human, reward, value, RuleSettings())
    auto = ~human
    a = res.advantage[auto]
    threshold = res.thresholds["global"]
    assert np.count_nonzero(a == a[a >= threshold].min()) == 1  # no tie at the threshold
    assert int(res.positive[auto].sum()) == 4296 and int((~res.positive[auto]).sum()) == 10022
    assert res.positive[human].all()


def test_tail_rules_differ_on_a_failed_episode():
    T, N = 6, 3
    reward = np.r_[np.full(T - 1, -1 / T), -1.0].astype(np.float32)
    value = np.linspace(-0.5, -0.95, T)
    ep, fr, human = np.zeros(T, int), np.arange(T), np.zeros(T, bool)
    zero = apply_rule(ep, fr, human, reward, value, RuleSettings(N, 0.5, "zero"))
    last = apply_rule(ep, fr, human, reward, value, RuleSettings(N, 0.5, "last"))
    t = 4  # t + N >= T: bootstrap differs by V[T-1]
    expect_zero = reward[t:].astype(np.float64).sum() + 0.0 - value[t]
    assert zero.advantage[t] == np.float32(expect_zero)
    assert last.advantage[t] == np.float32(expect_zero + value[-1])
    assert zero.advantage[0] == last.advantage[0]  # inside the episode both use V[t+N]


def test_demo_episodes_untouched_and_short_episodes_valid():
    ep = np.array([0, 0, 1, 1, 1])
    fr = np.array([0, 1, 0, 1, 2])
    human = np.array([1, 1, 0, 1, 0], bool)
    res = apply_rule(
        ep, fr, human, np.zeros(5, np.float32), np.array([np.nan, np.nan, -0.2, -0.5, -0.1]), RuleSettings(lookahead=50)
    )
    assert res.rollout.tolist() == [False, False, True, True, True]
    labels = res.labels(np.array(["positive", "odd", "none", "none", "none"], dtype=object))
    assert labels[:2].tolist() == ["positive", "odd"] and labels[3] == "positive"


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"lookahead": 0}, "--lookahead"),
        ({"positive_ratio": 0.0}, "--positive-ratio"),
        ({"positive_ratio": 1.5}, "--positive-ratio"),
        ({"tail_bootstrap": "mean"}, "--tail-bootstrap"),
        ({"threshold_scope": "robot"}, "--threshold-scope"),
    ],
)
def test_bad_settings(kwargs, needle):
    with pytest.raises(BadInput, match=needle):
        RuleSettings(**kwargs)


def test_ratio_and_top_percent_are_one_knob():
    assert resolve_ratio(None, None) == 0.3
    assert resolve_ratio(None, 30) == 0.3
    assert resolve_ratio(0.25, 25.0) == 0.25
    with pytest.raises(BadInput, match="disagree"):
        resolve_ratio(0.3, 20)
    with pytest.raises(BadInput, match="top-percent"):
        resolve_ratio(None, 0)
