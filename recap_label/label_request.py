"""What one `label` invocation asks for, checked as a whole before any file is read.

The flags that only make sense together (or never together) are refused here with one line
saying which to drop: --score-only / --shard / --dry-run, the two spellings of the dataset and of
the shard, --positive-ratio vs --top-percent. The CLI builds a LabelRequest from its flags; the
library (commands/label.py) gets the parts it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from recap_label.errors import BadInput, warn
from recap_label.rule import resolve_ratio


INFER_MODES = ("needed", "all")


@dataclass(frozen=True)
class LabelRequest:
    dataset: str  # as given: a folder or local/<name>
    positive_ratio: float | None  # None: neither --positive-ratio nor --top-percent was given
    shard: tuple[int, int] | None  # (I, N), 1-based: --score-only scores shard I of N
    score_only: bool = False
    dry_run: bool = False
    recompute: bool = False
    allow_original: bool = False
    infer: str = "all"  # --infer: "all" rollout frames, or only the "needed" ones (values the rule uses)
    # the value source's own flags (values.sources.value_source_from_options checks them)
    values_file: Path | None = None
    value_column: str | None = None
    values_column: str | None = None
    use_ema: bool = True
    compile_model: bool = False

    # the `label` command's parameters that make the request (its other parameters are Settings keys)
    FLAGS: ClassVar[tuple[str, ...]] = (
        *("dataset", "data_dir", "positive_ratio", "top_percent", "shard", "episode_shard_index"),
        *("episode_num_shards", "score_only", "dry_run", "recompute", "allow_original", "values_file"),
        *("value_column", "values_column", "use_ema", "compile_model", "infer"),
    )

    @classmethod
    def from_flags(
        cls,
        *,
        dataset: str | None,
        data_dir: str | None,
        positive_ratio: float | None,
        top_percent: float | None,
        shard: str | None,
        episode_shard_index: int | None,
        episode_num_shards: int | None,
        **rest,
    ) -> "LabelRequest":
        if (
            top_percent is not None and 0 < top_percent < 1 and positive_ratio is None
        ):  # 0 and below are refused, not warned
            warn(
                f"--top-percent {top_percent:g} labels {top_percent:g} % of the autonomous frames positive; "
                f"for {100 * top_percent:g} % pass --top-percent {100 * top_percent:g} (or --positive-ratio "
                f"{top_percent:g})"
            )
        if dataset and data_dir and dataset != data_dir:
            raise BadInput("give the dataset once: as DATASET or as --data-dir")
        target = dataset or data_dir
        if not target:
            raise BadInput("no dataset given; pass DATASET (a folder or local/<name>)")
        ratio = None if positive_ratio is None and top_percent is None else resolve_ratio(positive_ratio, top_percent)
        request = cls(target, ratio, parse_shard(shard, episode_shard_index, episode_num_shards), **rest)
        request.check()
        return request

    def check(self) -> None:
        """Refuse flag combinations that cannot be carried out."""
        if (self.score_only or self.shard is not None) and (
            self.values_file is not None or self.value_column is not None
        ):
            flag = "--shard" if self.shard is not None else "--score-only"
            raise BadInput(
                f"{flag} needs --checkpoint-dir: values from --values or --value-column have nothing to score"
            )
        if self.shard is not None and not self.score_only:
            raise BadInput(
                "--shard needs --score-only: each shard only scores its part; the labels are written once, by a "
                "final `label` without --shard"
            )
        if self.infer not in INFER_MODES:
            raise BadInput(f"--infer must be {' or '.join(INFER_MODES)}, got {self.infer!r}")
        if self.score_only and self.infer == "needed":
            raise BadInput(
                "--infer needed is for `label` itself: --score-only scores every frame of its episodes; drop one"
            )
        if self.score_only and self.dry_run:
            raise BadInput(
                "--score-only and --dry-run do not go together: --score-only writes value parts, --dry-run writes "
                "nothing; run them one after the other"
            )

    @property
    def source_options(self) -> dict:
        """The keyword arguments of values.sources.value_source_from_options."""
        return {
            "values_file": self.values_file,
            "value_column": self.value_column,
            "values_column": self.values_column,
            "use_ema": self.use_ema,
            "compile_model": self.compile_model,
        }

    @property
    def score_options(self) -> dict:
        """The keyword arguments of commands.label.score_only."""
        return {"shard": self.shard, "recompute": self.recompute, "allow_original": self.allow_original}


def parse_shard(shard: str | None, index0: int | None, count: int | None) -> tuple[int, int] | None:
    """--shard I/N (1-based), or pistar-world's --episode_shard_index K --episode_num_shards N (0-based)."""
    spec = None
    if shard is not None:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise BadInput(f"--shard must be I/N with whole numbers, e.g. --shard 3/16, got {shard!r}")
        spec = (int(m.group(1)), int(m.group(2)))
    if index0 is not None or count is not None:
        if index0 is None or count is None:
            raise BadInput("--episode_shard_index and --episode_num_shards go together; or use --shard I/N")
        old = (index0 + 1, count)
        if spec is not None and spec != old:
            raise BadInput(
                f"--shard {shard} and --episode_shard_index {index0} --episode_num_shards {count} disagree; give one "
                f"of them"
            )
        spec = old
    if spec is not None:
        i, n = spec
        if n < 1 or not 1 <= i <= n:
            raise BadInput(f"--shard {i}/{n}: I must be between 1 and N (N >= 1); shards are numbered 1..N")
    return spec
