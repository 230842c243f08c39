"""The one value source the `label` options name (values.sources, or values.model_source)."""

from __future__ import annotations

from pathlib import Path

from recap_label.config import Settings
from recap_label.errors import BadInput
from recap_label.values.sources import ColumnValues, FileValues
from recap_label.values.types import ValueSource


def value_source_from_options(
    settings: Settings,
    *,
    values_file: Path | None,
    value_column: str | None,
    use_ema: bool,
    compile_model: bool,
    values_column: str | None = None,
) -> ValueSource:
    """The one value source the options name. A checkpoint from the config file or environment
    is a default: an explicit --values or --value-column takes its place."""
    checkpoint = settings.checkpoint_dir
    checkpoint_flag = settings.sources.get("checkpoint_dir", "").startswith("flag")
    given = [
        n
        for n, v in (
            ("--checkpoint-dir", checkpoint if checkpoint_flag else None),
            ("--values", values_file),
            ("--value-column", value_column),
        )
        if v is not None
    ]
    if not given and checkpoint is not None:
        given = ["--checkpoint-dir"]
    if len(given) != 1:
        which = "none was given" if not given else f"got {' and '.join(given)}"
        raise BadInput(f"give exactly one value source: --checkpoint-dir, --values or --value-column ({which})")
    if values_column is not None and given != ["--values"]:
        raise BadInput("--values-column names the value column of a --values file; give it with --values")
    if given == ["--values"]:
        return FileValues(values_file, values_column or "value")
    if given == ["--value-column"]:
        return ColumnValues(value_column)
    from recap_label.values.model_source import ModelValues

    return ModelValues.from_settings(settings, use_ema=use_ema, compile_model=compile_model)
