"""Small statistics in numpy (no scipy): ranks, Pearson and Spearman correlation, the AUC of a
two-class separation, and Cohen's kappa of two labelings."""

from __future__ import annotations

import numpy as np


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (as scipy.stats.rankdata's default)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # first position of each run of equal values, and its length
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    lengths = np.diff(np.r_[starts, x.size])
    average = starts + (lengths + 1) / 2.0  # mean of the 1-based ranks starts+1 .. starts+len
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(average, lengths)
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """None when either side is constant (the correlation is undefined) or has under 2 values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2:
        return None
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt((da * da).sum() * (db * db).sum())
    if denom == 0 or not np.isfinite(denom):
        return None
    return float((da * db).sum() / denom)


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    return pearson(rankdata(a), rankdata(b))


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U / n1 n0);
    None without both classes."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(scores)
    u = ranks[positive].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def confusion(a: np.ndarray, b: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """counts[i, j]: rows labeled classes[i] in `a` and classes[j] in `b`."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    out = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for i, ca in enumerate(classes):
        in_a = a == ca
        for j, cb in enumerate(classes):
            out[i, j] = int(np.count_nonzero(in_a & (b == cb)))
    return out


def cohen_kappa(matrix: np.ndarray) -> float | None:
    """(p_observed - p_chance) / (1 - p_chance) of a confusion matrix; None when undefined
    (no rows, or both labelings put every row in the same single class)."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.sum()
    if n == 0:
        return None
    observed = np.trace(m) / n
    chance = float((m.sum(axis=1) * m.sum(axis=0)).sum() / (n * n))
    if chance == 1.0:
        return None
    return float((observed - chance) / (1.0 - chance))
