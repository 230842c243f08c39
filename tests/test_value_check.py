"""The value-model section of `verify` and of the end-of-label report, on real files: Spearman and
AUC against computations done here, the warnings a person needs, and `label` + `verify` where
polars is not installed."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.stats import auc, cohen_kappa, rankdata, spearman
from support import cmd, sub_env, values_file


def average_ranks(x) -> list[float]:
    """1-based ranks with ties averaged, the slow obvious way."""
    x = list(map(float, x))
    out = []
    for v in x:
        below = sum(1 for w in x if w < v)
        equal = sum(1 for w in x if w == v)
        out.append(below + (equal + 1) / 2)
    return out


def test_stats_against_definitions():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = x + rng.integers(0, 3, 40)
    assert rankdata(x).tolist() == average_ranks(x)
    assert spearman(x, y) == pytest.approx(np.corrcoef(average_ranks(x), average_ranks(y))[0, 1])
    s, pos = rng.normal(size=15).round(1), rng.integers(0, 2, 15).astype(bool)
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in s[pos] for b in s[~pos]]
    assert auc(s, pos) == pytest.approx(sum(pairs) / len(pairs))
    assert auc(s, np.ones(15, bool)) is None and spearman(np.ones(5), np.arange(5)) is None
    assert cohen_kappa(np.array([[5, 0], [0, 5]])) == 1.0 and cohen_kappa(np.array([[4, 0], [0, 0]])) is None


def write(tmp_path: Path, name: str, **replace) -> Path:
    spec = synth.simple_spec("v2.1", episodes=8, length=60, demos=1, png_cameras=0, video_cameras=0)
    return synth.write_dataset(tmp_path / name, dataclasses.replace(spec, **replace))


def flat_values(root: Path, out: Path) -> Path:
    """V = -0.5 plus a little noise: the near-flat model of the reported incident."""
    table = DatasetFiles.open(root).read_columns(["episode_index", "frame_index"])
    rng = np.random.default_rng(0)
    pq.write_table(table.append_column("value", pa.array(-0.5 + 1e-4 * rng.standard_normal(table.num_rows))), out)
    return out


def test_a_flat_model_piles_positives_into_the_tails_of_successful_episodes(cli, lerobot_home, tmp_path):
    cli("copy", write(tmp_path, "vial"))
    dest = tmp_path / "vial_vlm_label"
    out = json.loads(
        cli(
            "label", dest, "--values", flat_values(dest, tmp_path / "flat.parquet"), "--lookahead", "10", "--json"
        ).stdout
    )
    vm = out["value_model"]
    # the tail frames of the successful episodes took the positives; the failed-episode check is silent
    assert out["warnings"] == []
    assert vm["successes"] == 5 and vm["tail_positives"] == 10 * vm["successes"]  # every tail frame of every success
    assert vm["warnings"][0].startswith(f"V is nearly constant (std {vm['v_std']:.4g} < 0.01)")
    assert vm["warnings"][-1].startswith(
        f"{vm['tail_positives']} of {vm['positives']} autonomous positives are in the last 10 frames of an episode"
    )
    report = json.loads(cli("verify", dest, "--json").stdout)
    assert report["value_model"]["warnings"] == vm["warnings"]
    text = cli("verify", dest).stdout
    assert "warning: value model: V is nearly constant" in " ".join(text.split())


def test_spearman_and_auc_against_the_dataset(cli, lerobot_home, tmp_path):
    cli("copy", write(tmp_path, "vial"))
    dest = tmp_path / "vial_vlm_label"
    cli("label", dest, "--values", values_file(dest), "--lookahead", "10")
    vm = json.loads(cli("verify", dest, "--json").stdout)["value_model"]
    side = pq.read_table(dest / "meta" / "recap_label" / "values.parquet").to_pydict()
    data = {}
    for p in sorted((dest / "data").rglob("*.parquet")):
        t = pq.read_table(p, columns=["episode_index", "frame_index", "value_label", "reward_label"]).to_pydict()
        for e, f, mc, r in zip(t["episode_index"], t["frame_index"], t["value_label"], t["reward_label"]):
            data[(e, f)] = (mc, r)
    keys = list(zip(side["episode_index"], side["frame_index"]))
    mc = [data[k][0] for k in keys]
    assert vm["spearman_mc"] == pytest.approx(np.corrcoef(average_ranks(side["value"]), average_ranks(mc))[0, 1])
    # AUC: each episode's mean V over its last 10 frames, success from the last reward_label
    eps = sorted(set(side["episode_index"]))
    tail_mean, success = [], []
    for e in eps:
        frames = sorted((f, v) for (ee, f), v in zip(keys, side["value"]) if ee == e)
        tail_mean.append(np.mean([v for _, v in frames[-10:]]))
        success.append(data[(e, frames[-1][0])][1] > -0.5)
    pairs = [
        (1.0 if a > b else 0.5 if a == b else 0.0)
        for a, s in zip(tail_mean, success)
        if s
        for b, t in zip(tail_mean, success)
        if not t
    ]
    assert vm["auc_success"] == pytest.approx(sum(pairs) / len(pairs))
    assert (vm["successes"], vm["failures"]) == (sum(success), len(success) - sum(success))
    assert vm["warnings"] == [
        f"V's Spearman correlation with 'value_label' is {vm['spearman_mc']:.2f} (< 0.3): V orders the frames poorly"
    ]


def test_without_the_monte_carlo_column_it_says_so(cli, lerobot_home, tmp_path):
    cli("copy", write(tmp_path, "vial", include_value_label=False))
    dest = tmp_path / "vial_vlm_label"
    cli("label", dest, "--values", values_file(dest), "--lookahead", "10")
    vm = json.loads(cli("verify", dest, "--json").stdout)["value_model"]
    assert vm["spearman_mc"] is None
    assert vm["notes"] == [
        "no 'value_label' column: Spearman against the Monte-Carlo value skipped (set --mc-value-col)"
    ]


BLOCK_POLARS = (
    "import sys\nsys.modules['polars'] = None  # `import polars` raises ImportError, as where it is not installed\n"
)


def test_label_and_verify_run_without_polars(lerobot_home, tmp_path):
    src = write(tmp_path, "vial")
    blocker = tmp_path / "no-polars"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_POLARS)
    env = sub_env(lerobot_home)
    env["PYTHONPATH"] = str(blocker) + os.pathsep + env["PYTHONPATH"]

    def run(*args):
        r = subprocess.run(cmd(*args), capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return r

    # the blocker works: polars cannot be imported in these processes
    assert subprocess.run([sys.executable, "-c", "import polars"], env=env, capture_output=True).returncode != 0
    run("copy", src)
    dest = tmp_path / "vial_vlm_label"
    out = json.loads(run("label", dest, "--values", values_file(dest), "--lookahead", "10", "--json").stdout)
    assert out["value_model"]["frames"] > 0 and out["run"] == "run-0001"
    assert json.loads(run("verify", dest, "--json").stdout)["value_model"]["frames"] > 0


def test_a_pile_up_in_the_tails_of_a_few_episodes_warns(cli, lerobot_home, tmp_path):
    """4 successes in 10 rollouts: their tails are all positive, the pooled tail share stays under 50 %."""
    spec = synth.simple_spec("v2.1", episodes=10, length=120, demos=0, png_cameras=0, video_cameras=0)
    episodes = [dataclasses.replace(e, success=i < 4, interventions=[]) for i, e in enumerate(spec.episodes)]
    cli("copy", synth.write_dataset(tmp_path / "vial", dataclasses.replace(spec, episodes=episodes)))
    dest = tmp_path / "vial_vlm_label"
    vm = json.loads(
        cli(
            "label", dest, "--values", flat_values(dest, tmp_path / "flat.parquet"), "--lookahead", "10", "--json"
        ).stdout
    )["value_model"]
    assert (vm["successes"], vm["tail_positives"]) == (
        4,
        40,
    )  # every tail frame of every success, and no other tail frame
    assert vm["warnings"][-1] == (
        "40 of 360 autonomous positives are in the last 10 frames of an episode (40 % of those frames are positive, "
        "30 % overall; "
        "in 4 of 10 rollout episodes over 90 %, e.g. 0, 1, 2): the zero tail bootstrap makes A = sum(r) - V[t] "
        "there; compare with --tail-bootstrap last"
    )
