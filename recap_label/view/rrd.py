"""`view --rrd / --spawn / --serve`: one Rerun recording per episode, in the conventions of
LeRobot's own viewer (lerobot-dataset-viz): the application id from the dataset's name and the
episode, the timelines `frame_index` (a sequence) and `timestamp` (seconds), one compressed
(JPEG) image entity per camera, and a blueprint with a 2D view per camera beside time series.

Logged per frame: /values/V, /values/A, /values/threshold, /labels/adv_ind (1 positive,
-1 negative, 0 none; also a coloured state band /labels/adv_ind_band), /labels/intervention
and /task; with --compare /values/V_other, /labels/adv_ind_other and /labels/flipped (1 where
the label flipped). Rerun is the optional `view` extra: imported only here, only when used.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from recap_label.errors import BadInput
from recap_label.view.cameras import short_name
from recap_label.view.episodes import LABEL_CODE, EpisodeSeries
from recap_label.view.mp4 import (
    A_COLOR,
    FLIP,
    INTERVENTION,
    LABEL_COLORS,
    OTHER_V_COLOR,
    THRESHOLD_COLOR,
    V_COLOR,
)

JPEG_QUALITY = 80
JPEG_THREADS = 2  # Pillow's encoder releases the GIL


def import_rerun():
    """The rerun module, or the one-line error that names the extra."""
    try:
        import rerun
        import rerun.blueprint
    except ImportError:
        raise BadInput(
            "--rrd, --spawn and --serve need Rerun, the `view` extra: pip install 'recap-label[view]' (--mp4 needs "
            "nothing more)"
        ) from None
    return rerun


def application_id(dataset: str, episode: int) -> str:
    """`<dataset>_episode_<N>`: LeRobot's `<repo>/episode_<N>` in the characters Rerun allows in an id."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{dataset}_episode_{episode}")


def blueprint(rr, cameras: list[str], compare: bool):
    rrb = rr.blueprint
    views = [rrb.Spatial2DView(origin=f"/cameras/{short_name(c)}", name=short_name(c)) for c in cameras]
    series = [
        rrb.TimeSeriesView(origin="/values", name="V, A, threshold"),
        rrb.StateTimelineView(
            origin="/labels",
            contents=["/labels/adv_ind_band"] + (["/labels/adv_ind_other_band"] if compare else []),
            name="adv_ind band",
        ),
        rrb.TimeSeriesView(origin="/labels", name="adv_ind, intervention" + (", flips" if compare else "")),
        rrb.TextDocumentView(origin="/task", name="task"),
    ]
    left = rrb.Grid(*views) if len(views) > 1 else (views[0] if views else rrb.TextDocumentView(origin="/task"))
    return rrb.Blueprint(
        rrb.Horizontal(left, rrb.Vertical(*series, row_shares=[3, 1, 2, 1]), column_shares=[3, 2]), collapse_panels=True
    )


def _jpeg(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _state_config(rr, entity: str, rec) -> None:
    names = ["positive", "negative", "none"]
    rec.log(
        entity, rr.StateConfiguration(values=names, labels=names, colors=[LABEL_COLORS[n] for n in names]), static=True
    )


def log_episode(
    rec, rr, series: EpisodeSeries, cameras: list[str], frames: Iterable[list[np.ndarray]], other_title: str | None
) -> None:
    """Everything of one episode into the recording `rec`: styles (static), the series as columns,
    then the camera images frame by frame (encoded a few ahead, never all held)."""
    n = len(series)
    times = [rr.TimeColumn("frame_index", sequence=series.frame), rr.TimeColumn("timestamp", duration=series.timestamp)]
    styles = {
        "values/V": ("V", V_COLOR),
        "values/A": ("A", A_COLOR),
        "values/threshold": ("threshold", THRESHOLD_COLOR),
        "labels/adv_ind": ("adv_ind (1 positive, -1 negative, 0 none)", LABEL_COLORS["positive"]),
        "labels/intervention": ("intervention", INTERVENTION),
    }
    columns = {
        "values/V": series.value,
        "values/A": series.advantage,
        "values/threshold": series.threshold,
        "labels/adv_ind": np.array([LABEL_CODE.get(x, 0.0) for x in series.label]),
        "labels/intervention": series.human.astype(np.float64),
    }
    if other_title is not None:
        styles.update(
            {
                "values/V_other": (f"V {other_title}", OTHER_V_COLOR),
                "labels/adv_ind_other": (f"adv_ind {other_title}", OTHER_V_COLOR),
                "labels/flipped": ("flipped", FLIP),
            }
        )
        columns.update(
            {
                "values/V_other": series.other_value,
                "labels/adv_ind_other": np.array([LABEL_CODE.get(x, np.nan) for x in series.other_label]),
                "labels/flipped": series.flipped.astype(np.float64),
            }
        )
    for entity, (name, color) in styles.items():
        rec.log(entity, rr.SeriesLines(names=name, colors=[color]), static=True)
        rec.send_columns(
            entity, indexes=times, columns=rr.Scalars.columns(scalars=np.asarray(columns[entity], np.float64))
        )
    for entity, labels in (("labels/adv_ind_band", series.label), ("labels/adv_ind_other_band", series.other_label)):
        if labels is None:
            continue
        _state_config(rr, entity, rec)
        change = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        rec.send_columns(
            entity,
            indexes=[
                rr.TimeColumn("frame_index", sequence=series.frame[change]),
                rr.TimeColumn("timestamp", duration=series.timestamp[change]),
            ],
            columns=rr.StateChange.columns(state=[str(labels[k]) or "none" for k in change]),
        )
    change = [k for k in range(n) if k == 0 or series.task[k] != series.task[k - 1]]
    for k in change:
        rec.set_time("frame_index", sequence=int(series.frame[k]))
        rec.set_time("timestamp", duration=float(series.timestamp[k]))
        rec.log("task", rr.TextDocument(series.task[k]))
    names = [f"cameras/{short_name(c)}" for c in cameras]
    with ThreadPoolExecutor(JPEG_THREADS) as pool:
        for k, cams in enumerate(frames):
            encoded = list(pool.map(_jpeg, cams))
            rec.set_time("frame_index", sequence=int(series.frame[k]))
            rec.set_time("timestamp", duration=float(series.timestamp[k]))
            for name, data in zip(names, encoded):
                rec.log(name, rr.EncodedImage(contents=data, media_type="image/jpeg"))
