"""The smaller things seen on the iteration loop (issue 20, item 7), each on real files: a dry run of
an original refused before inference, "not found" naming the path once, "did you mean local/…",
the per-task share by task text, `verify` after `--to copy`, the earlier sidecars kept (bounded),
and `recap-label cache`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth
from support import error_line, model_args, tree_digest

LABEL = ("--value-column", "value_label", "--lookahead", "5")


@pytest.fixture
def vial(tmp_path) -> Path:
    return synth.write_dataset(
        tmp_path / "vial", synth.simple_spec("v2.1", episodes=5, length=30, demos=1, png_cameras=0, video_cameras=0)
    )


@pytest.fixture
def cams(cli, lerobot_home, tmp_path) -> Path:
    """An original with the two cameras the tiny model reads (PNG base, AV1 wrist), and its copy."""
    spec = synth.simple_spec("v3.0", episodes=3, length=20, demos=1, png_cameras=1, video_cameras=1, size=32)
    synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", tmp_path / "ds")
    return tmp_path / "ds"


def test_a_dry_run_of_an_original_is_refused_before_inference(cli, cams, tmp_path):
    before = tree_digest(tmp_path)
    line = error_line(cli("label", cams, *model_args("--dry-run"), code=None))
    assert line == (
        f"Error: {cams} has no copy lineage: it looks like an original dataset; label a copy made with `recap-label "
        f"copy`, or pass --allow-original"
    )
    # no model was loaded or converted, no values were inferred and kept
    assert tree_digest(tmp_path) == before and not (tmp_path / "model-cache").exists()


def test_not_found_names_the_path_once(cli, lerobot_home, tmp_path):
    line = error_line(cli("verify", "/nope/ds", code=2))
    assert line == "Error: dataset /nope/ds not found; pass a LeRobot dataset folder or local/<name>"
    line = error_line(cli("verify", "local/nope", code=2))
    assert line.count("nope") == 1 and str(lerobot_home / "local") in line


def test_a_bare_copy_name_gets_did_you_mean_local(cli, lerobot_home, vial, tmp_path):
    cli("copy", vial)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    assert error_line(cli("verify", "vial_vlm_label", code=2)) == (
        "Error: dataset vial_vlm_label not found: there is no folder vial_vlm_label here; did you mean "
        "local/vial_vlm_label?"
    )


def test_label_shows_the_share_per_task_by_its_text(cli, lerobot_home, vial):
    cli("copy", vial)
    out = cli("label", "local/vial_vlm_label", *LABEL).stdout
    line = next(line for line in out.splitlines() if line.startswith("positive share per task: "))
    assert all(f"{task}: " in line for task in synth.SIMPLE_TASKS) and "task 0" not in line, line
    res = json.loads(cli("label", "local/vial_vlm_label", *LABEL, "--json").stdout)
    assert set(res["task_names"].values()) == set(synth.SIMPLE_TASKS)


def test_verify_after_rolling_back_to_the_copy_says_the_runs_are_undone(cli, lerobot_home, vial, tmp_path):
    v1 = tmp_path / "vial_vlm_label"
    cli("copy", vial)
    cli("label", v1, *LABEL)
    cli("label", v1, *LABEL, "--positive-ratio", "0.5")
    cli("rollback", v1, "--to", "copy")
    checks = {c["name"]: c for c in json.loads(cli("verify", v1, "--json").stdout)["checks"]}
    assert checks["labels (after a label run)"]["detail"] == (
        "no label run on disk: 2 recorded, all undone (the labels are those it was copied with)"
    )


def sidecar_values(root: Path) -> np.ndarray:
    return pq.read_table(root / "meta" / "recap_label" / "values.parquet")["value"].to_numpy()


@pytest.mark.slow  # three label runs, two of them inferring
def test_going_back_to_an_earlier_value_source_reuses_its_values(cli, cams, tmp_path):
    v1 = tmp_path / "ds_vlm_label"
    first = json.loads(cli("label", v1, *model_args("--json")).stdout)
    ema = sidecar_values(v1)
    raw = json.loads(cli("label", v1, *model_args("--no-use-ema", "--json")).stdout)
    assert first["values_from"] == raw["values_from"] == "inference"
    back = json.loads(cli("label", v1, *model_args("--json")).stdout)
    assert back["values_from"] == "sidecar (no inference)" and back["performance"] is None
    np.testing.assert_array_equal(sidecar_values(v1), ema)
    kept = list((v1 / "meta" / "recap_label" / "values-earlier").iterdir())
    assert len(kept) == 1  # the no-EMA values; the EMA ones are the sidecar again
    cli("verify", v1)


def test_the_earlier_sidecars_are_bounded(tmp_path):
    """Five value sources in turn: the sidecar and the two newest others are kept, no more."""
    from recap_label.lerobot.dataset import DatasetFiles
    from recap_label.values.cache import KEPT_PROVENANCES, ValueCache, earlier_sidecars
    from recap_label.values.types import Caching

    root = synth.write_dataset(
        tmp_path / "ds", synth.simple_spec("v2.1", episodes=2, length=10, demos=0, png_cameras=0, video_cameras=0)
    )
    ds = DatasetFiles.open(root)

    class Source:
        caching = Caching.SIDECAR

    class Txn:
        def stage_table(self, target, table):
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, target)

    frames = np.arange(10)
    for i in range(5):
        cache = ValueCache(ds, Source())
        z = np.zeros(10)
        cache.stage(
            Txn(),
            z,
            frames,
            z,
            z,
            np.array(["none"] * 10),
            provenance={"source": "model", "n": i},
            settings={},
            input_keys={},
        )
        cache.committed()
        os.utime(root / "meta" / "recap_label" / "values.parquet")
    earlier = earlier_sidecars(root)
    assert len(earlier) == KEPT_PROVENANCES - 1 == 2
    kept = {json.loads(pq.read_schema(p).metadata[b"recap_label.provenance"])["n"] for p in earlier}
    assert kept == {2, 3}


def test_cache_lists_and_clears_dry_run_values_and_converted_models(cli, cams, tmp_path):
    v1 = tmp_path / "ds_vlm_label"
    assert "nothing kept" in cli("cache").stdout
    cli("label", v1, *model_args("--dry-run"))
    listed = json.loads(cli("cache", "--json").stdout)
    kinds = sorted(e["kind"] for e in listed["entries"])
    assert kinds == ["dry-run", "models"] and listed["bytes"] > 0 and not listed["cleared"]
    dry = next(e for e in listed["entries"] if e["kind"] == "dry-run")
    model = next(e for e in listed["entries"] if e["kind"] == "models")
    assert dry["what"] == "ds_vlm_label" and "step_00000002" in model["what"]
    out = cli("cache").stdout
    assert "dry-run values · " in out and dry["path"] in out and "`recap-label cache --clear` removes them" in out
    before = tree_digest(v1)
    cleared = json.loads(cli("cache", "--clear", "--kind", "dry-run", "--json").stdout)
    assert cleared["cleared"] and [e["path"] for e in cleared["entries"]] == [dry["path"]]
    assert not Path(dry["path"]).exists() and Path(model["path"]).exists() and tree_digest(v1) == before
    assert "Error: --kind 'all' is not a cache kind" in error_line(cli("cache", "--kind", "all", code=2))
    cli("cache", "--clear")
    assert json.loads(cli("cache", "--json").stdout)["entries"] == []
    # the next label infers again: nothing was lost but time
    assert json.loads(cli("label", v1, *model_args("--json")).stdout)["values_from"] == "inference"
