"""`label`'s flags are checked as a whole (recap_label/label_request.py) before any file is read."""

from __future__ import annotations

import pytest

from recap_label.errors import BadInput
from recap_label.label_request import LabelRequest
from support import error_line

NO_SHARD = {"shard": None, "episode_shard_index": None, "episode_num_shards": None}


def request(**flags):
    base = {"dataset": "ds", "data_dir": None, "positive_ratio": None, "top_percent": None, **NO_SHARD}
    return LabelRequest.from_flags(**{**base, **flags})


def test_the_dataset_once_and_at_least_once():
    assert request(dataset=None, data_dir="d").dataset == "d"
    assert request(dataset="d", data_dir="d").dataset == "d"
    with pytest.raises(BadInput, match="give the dataset once: as DATASET or as --data-dir"):
        request(dataset="a", data_dir="b")
    with pytest.raises(BadInput, match="no dataset given"):
        request(dataset=None)


def test_both_shard_spellings_are_one_shard():
    assert request(shard="2/4", score_only=True).shard == (2, 4)
    assert request(episode_shard_index=1, episode_num_shards=4, score_only=True).shard == (2, 4)
    assert request(shard="2/4", episode_shard_index=1, episode_num_shards=4, score_only=True).shard == (2, 4)
    with pytest.raises(BadInput, match=r"--shard 3/4 and --episode_shard_index 1 --episode_num_shards 4 disagree"):
        request(shard="3/4", episode_shard_index=1, episode_num_shards=4, score_only=True)


def test_ratio_from_either_knob():
    assert request().positive_ratio is None  # not given: the configuration's value stands
    assert request(top_percent=25.0).positive_ratio == 0.25
    with pytest.raises(BadInput, match="disagree"):
        request(positive_ratio=0.3, top_percent=25.0)


def test_flags_are_refused_before_the_dataset_is_looked_at(cli, lerobot_home, tmp_path):
    """A wrong flag combination is named even when the dataset does not exist (nothing is read)."""
    line = error_line(
        cli("label", tmp_path / "nothere", "--score-only", "--dry-run", "--checkpoint-dir", tmp_path, code=2)
    )
    assert line.startswith("Error: --score-only and --dry-run do not go together")
    line = error_line(cli("label", tmp_path / "nothere", "--value-column", "v", code=2))
    assert "nothere" in line  # a valid combination gets as far as the dataset
