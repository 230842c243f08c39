"""The light value sources, which read V that exists already: a dataset column (`--value-column`)
or a parquet file of values computed elsewhere (`--values`). Both are read again every run.

The value model (`--checkpoint-dir`) is values.model_source; values.factory picks one of them
from the options; the protocol they share is values.types.ValueSource.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.errors import BadInput, DatasetError, first_line
from recap_label.lerobot.dataset import DatasetFiles, first_duplicate, read_parquet_table
from recap_label.store.fsutil import sha256_file
from recap_label.values.types import Caching, split_by_episode


class _LightSource:
    """Shared by the sources that read values: nothing to bind or prepare, no reuse."""

    caching = Caching.READ_EACH_RUN

    def bind(self, ds: DatasetFiles) -> None:
        pass

    def prepare(self) -> None:
        pass

    def input_keys(self, ds: DatasetFiles, episodes: list[int]) -> dict[int, str]:
        return {}

    def reuses(self, cached: dict) -> bool:
        return cached == self.provenance()


class ColumnValues(_LightSource):
    """V from a float column of the dataset itself (e.g. `value_label`, the Monte-Carlo target)."""

    def __init__(self, column: str):
        self.column = column
        self.name = f"value column {column!r}"

    def provenance(self) -> dict:
        return {"source": "value-column", "column": self.column}

    def episode_values(self, ds, episodes):
        schema = ds.schema(ds.data_files[0])
        if self.column not in schema.names:
            numeric = [f.name for f in schema if pa.types.is_floating(f.type)]
            raise DatasetError(
                f"value column {self.column!r} is not in {ds.root.name}; pass a --value-column that is (float "
                f"columns there: {', '.join(numeric) or 'none'})"
            )
        table = ds.read_columns(["episode_index", "frame_index", self.column])
        col = table[self.column]
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise DatasetError(
                f"value column {self.column!r} has type {col.type}, not a float column; pass a numeric --value-column"
            )
        if pa.types.is_integer(col.type) and set(np.unique(col.to_numpy(zero_copy_only=False)).tolist()) <= {0, 1}:
            # a flag (intervention, success) is no value estimate: its advantages would be meaningless
            raise DatasetError(
                f"value column {self.column!r} holds only 0 and 1 (a flag, not a value estimate); pass a float "
                f"column of V such as value_label"
            )
        yield from split_by_episode(
            table["episode_index"].to_numpy(),
            table["frame_index"].to_numpy(),
            col.to_numpy(zero_copy_only=False).astype(np.float64),
            episodes,
        )


VALUES_FILE_COLUMNS = "episode_index, frame_index, value"
PARQUET_MAGIC = b"PAR1"


class FileValues(_LightSource):
    """V from a parquet file with columns episode_index, frame_index and `column` (default value)."""

    def __init__(self, path: Path, column: str = "value"):
        self.path = Path(path)
        self.column = column
        self.name = f"values file {self.path}"
        self._sha256: str | None = None

    def provenance(self) -> dict:
        if self._sha256 is None:  # hashed once per run, however often provenance is asked for
            self._sha256 = sha256_file(self.path)
        out = {"source": "values-file", "path": str(self.path.absolute()), "sha256": self._sha256}
        if self.column != "value":  # recorded only when chosen: caches of the default stay valid
            out["column"] = self.column
        return out

    def _read(self) -> pa.Table:
        """The three columns, with messages about the file the user made (not a dataset file)."""
        with open(self.path, "rb") as f:
            head = f.read(4)
        if head != PARQUET_MAGIC:
            text = bool(head) and all(32 <= b < 127 or b in b"\t\r\n" for b in head)
            kind = "a text (CSV?) file, not parquet" if text else "not a parquet file"
            raise BadInput(
                f"values file {self.path} is {kind}; --values needs a parquet file with columns "
                f"{VALUES_FILE_COLUMNS} (e.g. pandas DataFrame.to_parquet)"
            )
        try:
            names = pq.read_schema(self.path).names
        except (pa.ArrowException, OSError) as exc:
            raise BadInput(
                f"values file {self.path} is damaged ({first_line(exc)}); write it again as parquet with columns "
                f"{VALUES_FILE_COLUMNS}"
            ) from None
        missing = [c for c in ("episode_index", "frame_index", self.column) if c not in names]
        if missing:
            which = "; name the value column with --values-column" if missing == [self.column] else ""
            raise BadInput(
                f"values file {self.path} has no column {missing[0]!r} (its columns: {', '.join(names)}){which}"
            )
        table = read_parquet_table(self.path, ["episode_index", "frame_index", self.column])
        return table.rename_columns(["episode_index", "frame_index", "value"])

    def episode_values(self, ds, episodes):
        if not self.path.exists():
            raise BadInput(
                f"values file {self.path} does not exist; pass a parquet file with episode_index, frame_index, value"
            )
        self.provenance()  # hashed before reading: a folder, or an unreadable file, is named as such
        table = self._read()
        if not (pa.types.is_floating(table["value"].type) or pa.types.is_integer(table["value"].type)):
            raise BadInput(
                f"values file {self.path}: column {self.column!r} has type {table['value'].type}, not a number; "
                f"write V as float"
            )
        ep, fr = table["episode_index"].to_numpy(), table["frame_index"].to_numpy()
        i = first_duplicate(ep, fr)  # a (episode, frame) pair given twice is ambiguous
        if i is not None:
            raise BadInput(
                f"values file {self.path} has episode {int(ep[i])} frame {int(fr[i])} more than once; keep one value "
                f"per frame"
            )
        _check_frames_exist(ds, ep, fr, self.path)
        yield from split_by_episode(ep, fr, table["value"].to_numpy(zero_copy_only=False).astype(np.float64), episodes)


def _check_frames_exist(ds: DatasetFiles, ep: np.ndarray, fr: np.ndarray, path: Path) -> None:
    """Values for frames the dataset does not have: the file was computed for another dataset."""
    rows = ds.read_columns(["episode_index", "frame_index"])
    have = rows["episode_index"].to_numpy().astype(np.int64) * (1 << 32) + rows["frame_index"].to_numpy()
    want = ep.astype(np.int64) * (1 << 32) + fr
    unknown = np.flatnonzero(~np.isin(want, have))
    if unknown.size:
        i = unknown[0]
        what = f"episode {int(ep[i])}" if int(ep[i]) not in ds.episodes else f"episode {int(ep[i])} frame {int(fr[i])}"
        raise BadInput(
            f"values file {path} has values for {what}, which {ds.root.name} does not have ({unknown.size} such "
            f"row(s)); was it computed for another dataset?"
        )
