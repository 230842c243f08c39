"""`verify --plot` on real files: the PNG says where V came from, which rollouts it shows and how
they were chosen, marks the positive frames, and gives each episode's intervention spans their own
hatch (read back from the PNG's text chunks, written from what was drawn)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from recap_label.demo import synth
from recap_label.lerobot.dataset import DatasetFiles
from support import tiny_spec, values_file


def plotted(cli, dest, tmp_path, *value_args) -> dict:
    cli("label", dest, *value_args, "--lookahead", "5")
    out = tmp_path / "labels.png"
    cli("verify", dest, "--plot", out)
    return Image.open(out).text


@pytest.fixture
def dest(cli, lerobot_home, tmp_path):
    src = synth.write_dataset(tmp_path / "ds", tiny_spec(episodes=7, length=30))
    cli("copy", src, "--json")
    return tmp_path / "ds_vlm_label"


def test_plot_names_the_value_source_the_choice_and_the_marks(cli, dest, tmp_path):
    text = plotted(cli, dest, tmp_path, "--value-column", "value_label")
    assert text["Description"].startswith("y axis: V (dataset column value_label); ")
    # 6 rollouts, 4 shown: evenly spaced, and the title says which
    assert text["Title"] == "V over time: 4 of 6 rollout episodes, evenly spaced by episode index (1, 3, 4, 6)"
    table = DatasetFiles.open(dest).read_columns(["episode_index", "frame_index", "adv_ind", "intervention"])
    ep = table["episode_index"].to_numpy()
    shown = np.isin(ep, [1, 3, 4, 6])
    positives = int((np.asarray(table["adv_ind"].to_pylist(), dtype=object)[shown] == "positive").sum())
    assert f"positive frames marked: {positives};" in text["Description"]
    # every intervention span of the shown episodes is listed, each episode with its own hatch
    spans = re.findall(r"episode (\d+) frames (\d+)-(\d+) hatch ([^;\s]+)", text["Description"])
    human = table["intervention"].to_numpy() == 1
    expected = set()
    for e in [1, 3, 4, 6]:
        frames = np.sort(table["frame_index"].to_numpy()[(ep == e) & human])
        for run in np.split(frames, np.flatnonzero(np.diff(frames) != 1) + 1):
            if run.size:
                expected.add((str(e), str(run[0]), str(run[-1])))
    assert {s[:3] for s in spans} == expected
    hatches = {}
    for e, _, _, hatch in spans:
        hatches.setdefault(e, set()).add(hatch)
    assert all(len(h) == 1 for h in hatches.values()) and len({h.pop() for h in hatches.values()}) == len(hatches)


def test_plot_of_a_values_file_says_so(cli, dest, tmp_path):
    values = values_file(dest)
    text = plotted(cli, dest, tmp_path, "--values", values)
    assert text["Description"].startswith(f"y axis: V (values file {values.name}); ")


def test_a_plot_that_fails_half_way_leaves_no_file(cli, dest, tmp_path, monkeypatch):
    """The PNG is written like every other file: into a temp file beside it, then renamed; a
    failure half-way (disk full) leaves neither half a PNG under the name asked for nor the temp."""
    import errno

    from matplotlib.figure import Figure

    cli("label", dest, "--value-column", "value_label", "--lookahead", "5")

    def half_then_full(self, fname, *args, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG\r\n")  # the first bytes, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_then_full)
    out = tmp_path / "plots" / "labels.png"
    out.parent.mkdir()
    r = cli("verify", dest, "--plot", out, code=None)
    assert r.exit_code == 2
    assert (
        r.stderr
        == "Error: disk full while running `recap-label verify`; free space and run again (nothing was changed)\n"
    )
    assert list(out.parent.iterdir()) == []
