"""`view` on LeRobot-written specimens with video (v3.0 AV1, v2.1 H.264), labeled for real: the .rrd
read back with Rerun's own reader, the MP4 decoded with PyAV and its strip read from the pixels,
the bad inputs, and Rerun absent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import (
    FIXTURES,
    cmd,
    data_files,
    error_line,
    isolate_lerobot_home,
    sub_env,
    values_file,
    writable_copy,
)

SPECIMENS = [FIXTURES / "v3.0" / "video_av1", FIXTURES / "v2.1" / "video_h264"]
PALETTE = {"positive": (46, 160, 67), "negative": (214, 39, 40), "none": (120, 120, 120)}


def labels_of(root: Path) -> dict[tuple[int, int], str]:
    out = {}
    for path in data_files(root):
        t = pq.read_table(path, columns=["episode_index", "frame_index", "adv_ind"]).to_pydict()
        out.update({(e, f): lab for e, f, lab in zip(t["episode_index"], t["frame_index"], t["adv_ind"])})
    return out


def sidecar_of(root: Path) -> dict[tuple[int, int], float]:
    t = pq.read_table(root / "meta" / "recap_label" / "values.parquet").to_pydict()
    return {(e, f): v for e, f, v in zip(t["episode_index"], t["frame_index"], t["value"])}


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture(params=SPECIMENS, ids=lambda p: f"{p.parent.name}/{p.name}")
def labeled(request, tmp_path, monkeypatch, cli):
    """Iteration 1 and 2 of a specimen, each labeled from its own values file (so labels differ)."""
    isolate_lerobot_home(tmp_path, monkeypatch)
    writable_copy(request.param, tmp_path / "vial")
    v1, v2 = tmp_path / "vial_vlm_label", tmp_path / "vial_vlm_label_v2"
    cli("copy", tmp_path / "vial")
    cli("label", "local/vial_vlm_label", "--values", values_file(v1, seed=0), "--lookahead", "2")
    cli("copy", "local/vial_vlm_label_active")
    cli(
        "label",
        "local/vial_vlm_label_v2",
        "--values",
        values_file(v2, seed=3),
        "--lookahead",
        "2",
        "--positive-ratio",
        "0.5",
    )
    return v1, v2


def read_rrd(path: Path) -> dict:
    """entity -> {timeline or component: values} from Rerun's own reader, plus the recordings."""
    from rerun.chunk import RrdReader

    reader = RrdReader(path)
    out: dict = {"_recordings": reader.recordings()}
    for chunk in reader.store().stream():
        if chunk.is_static:
            continue
        rb = chunk.to_record_batch()
        entry = out.setdefault(chunk.entity_path, {})
        for name in rb.schema.names:
            col = rb.column(name)
            if pa.types.is_duration(col.type) or pa.types.is_timestamp(col.type):
                col = col.cast(pa.int64())  # nanoseconds
            entry.setdefault(name, []).extend(col.to_pylist())
        entry.setdefault("_timelines", set()).update(chunk.timeline_names)
    return out


def scalars(entry: dict) -> np.ndarray:
    order = np.argsort(entry["frame_index"])
    return np.array([v[0] if isinstance(v, list) else v for v in entry["Scalars:scalars"]], dtype=np.float64)[order]


def test_rrd_holds_each_episode_as_on_disk(cli, labeled, tmp_path):
    v1, _ = labeled
    before = snapshot(v1)
    out = tmp_path / "rrd"
    out.mkdir()
    cli("view", "local/vial_vlm_label", "--episodes", "0-2", "--rrd", f"{out}/")
    assert snapshot(v1) == before  # only read
    labels, values = labels_of(v1), sidecar_of(v1)
    code = {"positive": 1.0, "negative": -1.0, "none": 0.0}
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"vial_vlm_label_episode_{e:06d}.rrd" for e in range(3)]
    for ep, path in enumerate(files):
        rec = read_rrd(path)
        assert [r.application_id for r in rec["_recordings"]] == [f"vial_vlm_label_episode_{ep}"]
        frames = sorted(f for (e, f) in labels if e == ep)
        v = rec["/values/V"]
        assert sorted(v["frame_index"]) == frames
        assert {"frame_index", "timestamp"} <= v["_timelines"]
        np.testing.assert_allclose(
            sorted(v["timestamp"]), np.array(frames) / 10 * 1e9, atol=1e3
        )  # ns, at the specimens' 10 fps
        np.testing.assert_array_equal(
            scalars(v).astype(np.float32), np.array([values[(ep, f)] for f in frames], np.float32)
        )
        np.testing.assert_array_equal(scalars(rec["/labels/adv_ind"]), [code[labels[(ep, f)]] for f in frames])
        for cam in ("front", "wrist"):
            img = rec[f"/cameras/{cam}"]
            assert len(img["EncodedImage:blob"]) == len(frames) and sorted(img["frame_index"]) == frames
            assert {"frame_index", "timestamp"} <= img["_timelines"]


def test_rrd_flip_series_is_what_diff_counts(cli, labeled, tmp_path):
    v1, v2 = labeled
    cli(
        "view",
        "local/vial_vlm_label_v2",
        "--compare",
        "local/vial_vlm_label",
        "--episodes",
        "0,1,2",
        "--rrd",
        f"{tmp_path}/",
    )
    a, b = labels_of(v2), labels_of(v1)
    report = json.loads(cli("diff", "local/vial_vlm_label_v2", "local/vial_vlm_label", "--json", "--episodes").stdout)
    per_episode = {r["id"]: r["flipped"] for r in report["episodes"]}
    assert sum(per_episode.values()) > 0  # the two iterations do disagree somewhere
    for ep in range(3):
        rec = read_rrd(tmp_path / f"vial_vlm_label_v2_episode_{ep:06d}.rrd")
        frames = sorted(f for (e, f) in a if e == ep)
        flips = scalars(rec["/labels/flipped"])
        np.testing.assert_array_equal(flips, [float(a[(ep, f)] != b[(ep, f)]) for f in frames])
        assert flips.sum() == per_episode[ep]
        assert "/values/V_other" in rec and "/labels/adv_ind_other" in rec


def decode(path: Path) -> tuple[list[np.ndarray], float, float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return frames, float(s.average_rate), float(s.duration * s.time_base)


def nearest(rgb: np.ndarray) -> str:
    return min(PALETTE, key=lambda k: float(np.sum((np.asarray(PALETTE[k], float) - rgb) ** 2)))


def test_mp4_strip_follows_the_labels(cli, labeled, tmp_path):
    from recap_label.view.mp4 import Canvas

    v1, _ = labeled
    labels = labels_of(v1)
    keys = sorted(k for k in labels if k[0] in (0, 2))
    out = tmp_path / "out.mp4"
    cli("view", "local/vial_vlm_label", "--episodes", "0,2", "--mp4", out)
    frames, fps, duration = decode(out)
    assert len(frames) == len(keys) and fps == 10
    assert duration == pytest.approx(len(keys) / 10, abs=1e-6)
    h, w, _ = frames[0].shape
    shapes = [(64, 64), (24, 32)]  # front, wrist: the geometry of the strip's rows (where to look)
    canvas = Canvas(shapes, len(keys), compare=False)
    assert (canvas.height, canvas.width) == (h, w)
    cursor_row = (canvas.cursor.y0 + canvas.cursor.y1) // 2
    band_row = (canvas.bands["label"].y0 + canvas.bands["label"].y1) // 2
    centres = []
    for i, img in enumerate(frames):
        lit = np.flatnonzero(img[cursor_row].min(axis=1) > 200)  # the white cursor, found from the pixels
        assert lit.size, f"no cursor on frame {i}"
        x = int(round(lit.mean()))
        centres.append(x)
        assert nearest(img[band_row, x].astype(float)) == labels[keys[i]], f"frame {i}"
    steps = np.diff(centres)
    assert np.all(np.abs(steps - (w - 20) / len(keys)) <= 2), steps  # one cell to the right per frame


def test_mp4_folder_one_file_per_episode_and_replaces_atomically(cli, labeled, tmp_path, monkeypatch):
    from recap_label.view import mp4

    out = tmp_path / "mp4s"
    out.mkdir()
    cli("view", "local/vial_vlm_label", "--episodes", "1,2", "--mp4", f"{out}/")
    assert [(p.name, len(decode(p)[0])) for p in sorted(out.iterdir())] == [
        ("vial_vlm_label_episode_000001.mp4", 3),
        ("vial_vlm_label_episode_000002.mp4", 4),
    ]

    target = tmp_path / "keep.mp4"
    target.write_bytes(b"the previous video")
    real = mp4.render

    def dies_half_way(*args):
        for k, img in enumerate(real(*args)):
            if k == 2:
                raise KeyboardInterrupt
            yield img

    monkeypatch.setattr(mp4, "render", dies_half_way)
    result = cli("view", "local/vial_vlm_label", "--episodes", "0", "--mp4", target, code=130)
    assert error_line(result).startswith("Error: interrupted")
    assert target.read_bytes() == b"the previous video"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".recap-tmp")] == []


def test_worst_picks_the_most_flipped_episode_first(cli, labeled, tmp_path):
    v1, v2 = labeled
    a, b = labels_of(v2), labels_of(v1)
    flips = {ep: sum(a[k] != b[k] for k in a if k[0] == ep) for ep in range(3)}
    out = json.loads(
        cli(
            "view",
            "local/vial_vlm_label_v2",
            "--compare",
            "local/vial_vlm_label",
            "--worst",
            "1",
            "--mp4",
            tmp_path / "w.mp4",
            "--json",
        ).stdout
    )
    top = max(flips.values())
    assert out["episodes"][0]["episode"] in [e for e, n in flips.items() if n == top]
    assert (
        out["episodes"][0]["reason"]
        == f"{top} of {sum(k[0] == out['episodes'][0]['episode'] for k in a)} frames flipped against "
        f"vial_vlm_label@run-0001"
    )


def test_bad_inputs_write_nothing(cli, labeled, tmp_path):
    v1, _ = labeled
    other_base = writable_copy(FIXTURES / "v3.0" / "video_h264", tmp_path / "other")
    cli("copy", other_base)
    cli("label", "local/other_vlm_label", "--values", values_file(tmp_path / "other_vlm_label"), "--lookahead", "2")
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    port = busy.getsockname()[1]
    os.mkdir(tmp_path / "outs")
    mp4 = ("--mp4", tmp_path / "outs" / "a.mp4")
    cases = [
        (("vial", *mp4), "has no label run"),
        (
            ("local/vial_vlm_label", "--episodes", "9", *mp4),
            "episode 9 does not exist; vial_vlm_label has episodes 0-2",
        ),
        (("local/vial_vlm_label", "--compare", "local/other_vlm_label", *mp4), "copies of different datasets"),
        (
            ("local/vial_vlm_label", "--cameras", "top", *mp4),
            "'top' is not a camera of vial_vlm_label; cameras there: observation.images.",
        ),
        (("local/vial_vlm_label", "--mp4", tmp_path / "missing" / "a.mp4"), "does not exist"),
        (("local/vial_vlm_label", "--mp4", tmp_path / "outs" / "a.avi"), "ending in .mp4"),
        (("local/vial_vlm_label", "--mp4", v1 / "meta" / "a.mp4"), "inside the dataset"),
        (
            ("local/vial_vlm_label", "--episodes", "0,1", "--rrd", tmp_path / "outs" / "a.rrd"),
            "pass a folder (--rrd DIR/)",
        ),
        (("local/vial_vlm_label", "--serve", "--port", port), f"port {port} is in use"),
        (("local/vial_vlm_label",), "needs an output"),
    ]
    before = snapshot(v1)
    for args, expected in cases:
        result = cli("view", *args, code=2)
        assert expected in error_line(result), (args, result.stderr)
    busy.close()
    assert snapshot(v1) == before
    assert list((tmp_path / "outs").iterdir()) == []


def test_without_rerun_rrd_is_refused_and_mp4_still_works(labeled, tmp_path):
    home = Path(os.environ["HF_LEROBOT_HOME"])
    blocked = (
        "import sys; sys.modules['rerun'] = None; from recap_label.cli import main; sys.argv[0] = 'recap-label'; main()"
    )
    run = lambda *args: subprocess.run(
        [sys.executable, "-c", blocked, *map(str, args)], capture_output=True, text=True, env=sub_env(home), timeout=120
    )
    assert cmd("x")[0] == sys.executable
    result = run("view", "local/vial_vlm_label", "--rrd", tmp_path / "a.rrd")
    assert result.returncode == 2 and "pip install 'recap-label[view]'" in error_line(result)
    assert not (tmp_path / "a.rrd").exists()
    result = run("view", "local/vial_vlm_label", "--episodes", "1", "--mp4", tmp_path / "a.mp4")
    assert result.returncode == 0, result.stderr
    assert len(decode(tmp_path / "a.mp4")[0]) == 3
