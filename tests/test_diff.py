"""`diff A B` and the whole iteration loop on real files: counts checked against the two datasets'
label columns read directly, Spearman against a rank correlation computed here, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth
from support import FIXTURES, data_files, error_line, values_file, writable_copy

CLASSES = ["positive", "negative", "none"]


def frames_of(root: Path, human_col: str = "intervention") -> dict[tuple[int, int], tuple[str, bool]]:
    """(episode, frame) -> (label, intervention) of every frame of a rollout episode, read with pyarrow."""
    rows = {}
    for path in data_files(root):
        t = pq.read_table(path, columns=["episode_index", "frame_index", human_col, "adv_ind"]).to_pydict()
        for ep, fr, h, lab in zip(t["episode_index"], t["frame_index"], t[human_col], t["adv_ind"]):
            rows[(ep, fr)] = (lab, bool(h[0] if isinstance(h, list) else h))
    rollout = {ep for (ep, _), (_, h) in rows.items() if not h}
    return {k: v for k, v in rows.items() if k[0] in rollout}


def expected_confusion(a: dict, b: dict, human: bool | None) -> list[list[int]]:
    m = [[0] * 3 for _ in range(3)]
    for key, (la, ha) in a.items():
        if human is None or ha == human:
            m[CLASSES.index(la)][CLASSES.index(b[key][0])] += 1
    return m


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of distinct values (the values files hold no ties)."""
    assert np.unique(x).size == x.size
    r = np.empty(x.size)
    r[np.argsort(x)] = np.arange(x.size)
    return r


def sidecar_v(root: Path) -> dict[tuple[int, int], float]:
    t = pq.read_table(root / "meta" / "recap_label" / "values.parquet").to_pydict()
    return {(e, f): v for e, f, v in zip(t["episode_index"], t["frame_index"], t["value"])}


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under root with its mtime, size and bytes (diff must change none)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_mtime_ns, st.st_size, p.read_bytes())
    return out


@pytest.fixture(params=["synth", "specimen"])
def original(request, tmp_path) -> Path:
    if request.param == "specimen":
        return writable_copy(FIXTURES / "v2.1" / "video_av1", tmp_path / "vial")
    return synth.write_dataset(
        tmp_path / "vial", synth.simple_spec("v2.1", episodes=6, length=40, demos=1, png_cameras=0, video_cameras=0)
    )


def test_the_iteration_loop_end_to_end(cli, lerobot_home, original, tmp_path):
    v1, v2 = tmp_path / "vial_vlm_label", tmp_path / "vial_vlm_label_v2"
    alias = lerobot_home / "local" / "vial_vlm_label_active"
    cli("copy", original)
    cli("label", "local/vial_vlm_label", "--values", values_file(v1, seed=0), "--lookahead", "5")
    cli("copy", "local/vial_vlm_label_active")  # the next iteration, from the active one
    cli(
        "label",
        "local/vial_vlm_label_v2",
        "--values",
        values_file(v2, seed=1),
        "--lookahead",
        "5",
        "--positive-ratio",
        "0.5",
    )
    assert os.readlink(alias) == str(v2)

    before = {p: snapshot(p) for p in (v1, v2)}
    out = json.loads(cli("diff", "local/vial_vlm_label", "local/vial_vlm_label_v2", "--json", "--episodes").stdout)
    assert {p: snapshot(p) for p in (v1, v2)} == before  # only read

    a, b = frames_of(v1), frames_of(v2)
    assert out["frames"] == len(a) == len(b)
    for group, human in (("all", None), ("intervention=0", False), ("intervention=1", True)):
        m = expected_confusion(a, b, human)
        got = out["by_intervention"][group]
        assert got["confusion"] == m, group
        n = sum(map(sum, m))
        assert got["frames"] == n and got["agreement"] == pytest.approx(sum(m[i][i] for i in range(3)) / n)
    # kappa from its definition
    m = np.array(expected_confusion(a, b, False), dtype=float)
    n = m.sum()
    pe = (m.sum(0) * m.sum(1)).sum() / n**2
    assert out["by_intervention"]["intervention=0"]["kappa"] == pytest.approx((np.trace(m) / n - pe) / (1 - pe))
    # per episode: flipped frames
    flips = {}
    for key, (la, _) in a.items():
        flips[key[0]] = flips.get(key[0], 0) + (la != b[key][0])
    assert {r["id"]: r["flipped"] for r in out["episodes"]} == flips
    assert [r["flipped"] for r in out["episodes"]] == sorted(flips.values(), reverse=True)
    # V: Spearman against ranks computed here
    va, vb = sidecar_v(v1), sidecar_v(v2)
    keys = sorted(va)
    x, y = np.array([va[k] for k in keys]), np.array([vb[k] for k in keys])
    assert out["values"]["spearman"] == pytest.approx(np.corrcoef(ranks(x), ranks(y))[0, 1], abs=1e-9)
    assert out["values"]["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
    assert out["values"]["max_abs_dv"] == pytest.approx(np.abs(x - y).max())
    assert out["settings"]["positive_ratio"] == [0.3, 0.5]
    th = out["thresholds"]["global"]
    assert th["shift"] == pytest.approx(th["b"] - th["a"])

    # the relabel went bad: retire it; `_active` is back on the first iteration, and `iterations` says so
    cli("rollback", "local/vial_vlm_label_v2", "--iteration")
    assert os.readlink(alias) == str(v1)
    its = json.loads(cli("iterations", "local/vial_vlm_label_active", "--json").stdout)
    rows = {r["name"]: r for r in its["iterations"]}
    assert rows["vial_vlm_label"]["active"] and not rows["vial_vlm_label_v2"]["active"]
    assert rows["vial_vlm_label_v2"]["retired"] and not rows["vial_vlm_label_v2"]["registered"]


def test_diff_of_two_runs_of_one_copy(cli, lerobot_home, tmp_path):
    src = synth.write_dataset(
        tmp_path / "vial",
        synth.simple_spec("v3.0", episodes=5, length=30, demos=1, png_cameras=0, video_cameras=0, rows_per_file=50),
    )
    cli("copy", src)
    v1 = tmp_path / "vial_vlm_label"
    values = values_file(v1)
    cli("label", v1, "--values", values, "--lookahead", "5")
    first = frames_of(v1)
    cli("label", v1, "--values", values, "--lookahead", "5", "--positive-ratio", "0.6")
    second = frames_of(v1)
    out = json.loads(cli("diff", f"{v1}@run-0001", f"{v1}@run-0002", "--json").stdout)
    assert out["by_intervention"]["all"]["confusion"] == expected_confusion(first, second, None)
    assert out["values"] is None  # the sidecar keeps run-0002's V only
    assert any("run-0001: the values sidecar holds another run's V" in n for n in out["notes"])
    # the current labels are the last run's: the same diff
    assert json.loads(cli("diff", f"{v1}@run-0001", v1, "--json").stdout)["by_intervention"] == out["by_intervention"]
    # a rolled-back run's labels are gone: said so
    cli("rollback", v1)
    line = error_line(cli("diff", f"{v1}@run-0001", f"{v1}@run-0002", code=2))
    assert (
        line
        == f"Error: {v1}@run-0002: run-0002 was rolled back by run-0003; its labels are not kept, compare a run that "
        f"is on disk"
    )
    line = error_line(cli("diff", f"{v1}@run-0001", f"{v1}@run-0009", code=2))
    assert line == f"Error: {v1}@run-0009: {v1} has no label run run-0009 (label runs on disk: run-0001)"


def test_diff_bad_input_changes_nothing(cli, lerobot_home, tmp_path):
    spec = synth.simple_spec("v2.1", episodes=4, length=30, demos=1, png_cameras=0, video_cameras=0)
    vial = synth.write_dataset(tmp_path / "vial", spec)
    cube = synth.write_dataset(tmp_path / "cube", spec)
    more = synth.write_dataset(
        tmp_path / "more" / "vial",
        synth.simple_spec("v2.1", episodes=6, length=30, demos=1, png_cameras=0, video_cameras=0),
    )
    for src in (vial, cube, more):
        cli("copy", src, "--no-register")
    v, c, m = tmp_path / "vial_vlm_label", tmp_path / "cube_vlm_label", tmp_path / "more" / "vial_vlm_label"
    assert (
        error_line(cli("diff", v, c, code=2))
        == f"Error: {v} has no label run: nothing to compare; run `recap-label label {v}` first"
    )
    for d in (v, c, m):
        cli("label", d, "--value-column", "value_label", "--lookahead", "5")
    before = {p: snapshot(p) for p in (v, c, m)}
    assert error_line(cli("diff", v, c, code=2)) == (
        "Error: vial_vlm_label and cube_vlm_label are copies of different datasets (vial vs cube); pass --force to "
        "compare them anyway"
    )
    assert error_line(cli("diff", v, v, code=2)) == (
        f"Error: {v} and {v} are the same labels (vial_vlm_label@run-0001); compare two iterations, or two runs as "
        f"DS@run-0001 DS@run-0002"
    )
    assert error_line(cli("diff", v, m, code=2)) == (
        "Error: the rollout episodes differ: 2 only in B (e.g. 4); pass --common to compare the episodes both have"
    )
    assert error_line(cli("diff", v, tmp_path / "nowhere", code=2)).startswith(
        f"Error: dataset {tmp_path / 'nowhere'} not found"
    )
    assert {p: snapshot(p) for p in (v, c, m)} == before
    out = json.loads(cli("diff", v, m, "--common", "--json").stdout)
    assert out["notes"][-1] == "compared the 3 rollout episodes both have (0 only in A, 2 only in B left out)"
    assert json.loads(cli("diff", v, c, "--force", "--json").stdout)["by_intervention"]["all"]["agreement"] == 1.0
    png = tmp_path / "diff.png"
    res = cli("diff", v, m, "--common", "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "episodes that flipped most" in res.stdout
    assert {p: snapshot(p) for p in (v, c, m)} == before


def test_diff_plot_destination_is_checked_first(cli, lerobot_home, tmp_path):
    src = synth.write_dataset(
        tmp_path / "vial", synth.simple_spec("v2.1", episodes=4, length=30, demos=1, png_cameras=0, video_cameras=0)
    )
    cli("copy", src, "--no-register")
    v = tmp_path / "vial_vlm_label"
    cli("label", v, "--value-column", "value_label", "--lookahead", "5")
    cli("label", v, "--value-column", "value_label", "--lookahead", "5", "--positive-ratio", "0.5")
    runs = (f"{v}@run-0001", f"{v}@run-0002")
    txt = tmp_path / "diff.txt"
    assert (
        error_line(cli("diff", *runs, "--plot", txt, code=2))
        == f"Error: --plot {txt}: the plot is a PNG; pass a file name ending in .png"
    )
    missing = tmp_path / "nowhere" / "diff.png"
    assert error_line(cli("diff", *runs, "--plot", missing, code=2)) == (
        f"Error: --plot {missing}: folder {missing.parent} does not exist; create it first or pass another path"
    )
    assert not txt.exists() and not missing.parent.exists()


def test_settings_that_differ_are_shown_as_written(cli, lerobot_home, tmp_path):
    """Issue 20, item 6: no Python reprs (None, True, {'…': …}) and no hash broken across lines in
    `diff`'s "settings that differ"; --json keeps the values whole."""
    src = synth.write_dataset(
        tmp_path / "vial",
        synth.simple_spec("v2.1", episodes=4, length=20, demos=1, png_cameras=0, video_cameras=0),
    )
    cli("copy", src)
    v1 = tmp_path / "vial_vlm_label"
    cli("label", v1, "--value-column", "value_label", "--lookahead", "5")
    cli("label", v1, "--values", values_file(v1), "--lookahead", "5", "--positive-ratio", "0.5")
    out = json.loads(cli("diff", f"{v1}@run-0001", f"{v1}@run-0002", "--json").stdout)
    assert out["settings"]["column"] == ["value_label", None] and len(out["settings"]["sha256"][1]) == 64
    text = cli("diff", f"{v1}@run-0001", f"{v1}@run-0002").stdout
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") >= 3}
    for key in ("column", "sha256", "positive_ratio"):
        assert key in rows, (key, text)
    assert "(none)" in rows["column"] and "None" not in text and "True" not in text and "{'" not in text
    assert out["settings"]["sha256"][1][:12] + "…" in rows["sha256"]  # whole on one line, shortened
    assert "0.3" in rows["positive_ratio"] and "0.5" in rows["positive_ratio"]
