"""`label --checkpoint-dir`: the real value-model code path at tiny size, on the CPU."""

from __future__ import annotations

import json
import os
import stat
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from recap_label.demo import synth
from recap_label.lerobot.dataset import DatasetFiles

from support import TINY_CHECKPOINT, TINY_TOKENIZER, episode_frames, error_line, model_args, sub_env, tree_digest


@pytest.fixture
def dataset(cli, lerobot_home, tmp_path) -> Path:
    """Rollouts with a PNG base camera and an AV1 wrist camera, copied."""
    spec = synth.simple_spec(
        "v3.0", episodes=4, length=30, demos=1, png_cameras=1, video_cameras=1, size=32, rows_per_file=70
    )
    synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", tmp_path / "ds", "--json")
    return tmp_path / "ds_vlm_label"


def sidecar(dest: Path):
    return pq.read_table(dest / "meta" / "recap_label" / "values.parquet")


def test_values_equal_a_direct_forward_pass(cli, dataset, tmp_path):
    out = json.loads(cli("label", dataset, *model_args("--batch-size", "7", "--json")).stdout)
    assert out["values_from"] == "inference"
    assert out["breakdown"]["autonomous"]["none"] == 0
    # recompute V of episode 1 by hand: decode, letterbox, tokenize, forward
    from recap_label.values.engine import load_value_model
    from recap_label.model.preprocess import PromptTokenizer, letterbox, to_model_input

    ds = DatasetFiles.open(dataset)
    model = load_value_model(TINY_CHECKPOINT, None, use_ema=True, cache_dir=None, siglip_dtype=torch.float32).model
    size = model.config.image_size
    base = letterbox(episode_frames(ds, 1, "observation.images.base"), size)
    wrist = letterbox(episode_frames(ds, 1, "observation.images.wrist"), size)
    images = torch.from_numpy(np.stack([base, wrist], axis=1))  # sorted slots: base_0_rgb, wrist_0_rgb
    tokens, _, _ = PromptTokenizer(TINY_TOKENIZER).tokenize(
        ds.tasks[int(ds.episode_rows(1, ["task_index"])["task_index"][0].as_py())]
    )
    tok = torch.from_numpy(np.repeat(tokens[None].astype(np.int64), len(base), 0))
    with torch.inference_mode():
        want = model(to_model_input(images), torch.ones(len(base), 2, dtype=torch.bool), tok, tok != 0).numpy()
    side = sidecar(dataset)
    ep = side["episode_index"].to_numpy()
    got = side["value"].to_numpy()[ep == 1]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_rule_only_rerun_uses_the_sidecar_and_ema_is_default(cli, dataset):
    first = json.loads(cli("label", dataset, *model_args("--json")).stdout)
    v1 = sidecar(dataset)["value"].to_numpy()
    again = json.loads(
        cli("label", dataset, *model_args("--positive-ratio", "0.5", "--lookahead", "3", "--json")).stdout
    )
    assert again["values_from"] == "sidecar (no inference)"
    np.testing.assert_array_equal(sidecar(dataset)["value"].to_numpy(), v1)
    raw = json.loads(cli("label", dataset, *model_args("--no-use-ema", "--json")).stdout)
    assert raw["values_from"] == "inference"  # other weights, other provenance
    assert not np.allclose(sidecar(dataset)["value"].to_numpy(), v1)
    forced = json.loads(cli("label", dataset, *model_args("--recompute", "--json")).stdout)
    assert forced["values_from"] == "inference"
    np.testing.assert_allclose(sidecar(dataset)["value"].to_numpy(), v1, atol=1e-6)
    assert first["run"] == "run-0001"


INFERENCE_MODULES = ("torch", "transformers", "tensorstore", "ml_dtypes", "av")

# `python -m recap_label …` with a hook that prints, at interpreter exit, which inference modules were imported
AT_EXIT_IMPORTS = (
    "import atexit, runpy, sys\n"
    f"atexit.register(lambda: print('IMPORTED', sorted(m for m in {INFERENCE_MODULES!r} if m in sys.modules), "
    f"file=sys.stderr))\n"
    "sys.argv[0] = 'recap-label'\n"
    "runpy.run_module('recap_label', run_name='__main__')\n"
)


@pytest.mark.slow  # two label subprocesses, one with inference
def test_relabel_from_the_sidecar_imports_no_inference_module(dataset):
    """Nothing to infer: the checkpoint is checked (step, tree, content hash) but neither torch nor
    the checkpoint reader (tensorstore, ml_dtypes) nor video decoding comes in."""
    env = sub_env(model_cache=os.environ["RECAP_LABEL_MODEL_CACHE"])

    def label(*extra: str) -> tuple[dict, str]:
        r = subprocess.run(
            [sys.executable, "-c", AT_EXIT_IMPORTS, "label", str(dataset), *model_args(*extra, "--json")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout), next(line for line in r.stderr.splitlines() if line.startswith("IMPORTED "))

    first, imported = label()
    assert first["values_from"] == "inference"
    assert imported == f"IMPORTED {sorted(INFERENCE_MODULES)!r}"  # the hook sees them when inference runs
    again, imported = label("--positive-ratio", "0.5")
    assert again["values_from"] == "sidecar (no inference)"
    assert imported == "IMPORTED []"


def _label_subprocess(
    dest: Path, *extra: str, crash: str | None = None, torchrun: int = 0
) -> subprocess.CompletedProcess:
    env = sub_env(
        crash=crash, model_cache=os.environ["RECAP_LABEL_MODEL_CACHE"]
    )  # the `lerobot_home` fixture's cache and home
    head = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(torchrun), "--master-port", "29533"]
        if torchrun
        else [sys.executable]
    )
    cmd = [*head, "-m", "recap_label", "label", str(dest), *model_args(*extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_interrupted_inference_resumes(cli, dataset, tmp_path):
    r = _label_subprocess(dataset, crash="episode-values:2")
    assert r.returncode == -9, r.stderr
    parts = sorted((dataset / "meta" / "recap_label" / "values-partial").glob("*/episode-*.parquet"))
    assert len(parts) == 2
    out = json.loads(cli("label", dataset, *model_args("--json")).stdout)
    assert "resumed: 2 of 3 episodes" in out["values_from"]
    assert not (dataset / "meta" / "recap_label" / "values-partial").exists()
    resumed = sidecar(dataset)["value"].to_numpy()
    cli("label", dataset, *model_args("--recompute", "--json"))
    np.testing.assert_allclose(sidecar(dataset)["value"].to_numpy(), resumed, atol=1e-6)


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_give_the_same_labels(cli, lerobot_home, tmp_path, dataset):
    twin = tmp_path / "twin"
    shutil.copytree(dataset, twin)
    r = _label_subprocess(dataset, "--json", torchrun=2)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["values_from"].startswith("inference on 2 ranks")
    cli("label", twin, *model_args("--json"))
    a, b = sidecar(dataset), sidecar(twin)
    assert a["label"].to_pylist() == b["label"].to_pylist()
    np.testing.assert_allclose(a["value"].to_numpy(), b["value"].to_numpy(), atol=1e-6)
    for p in sorted((dataset / "data").rglob("*.parquet")):
        q = twin / p.relative_to(dataset)
        assert pq.read_table(p)["adv_ind"].to_pylist() == pq.read_table(q)["adv_ind"].to_pylist()


@pytest.mark.slow
def test_torchrun_dry_run_writes_nothing_in_the_dataset(cli, lerobot_home, tmp_path, dataset):
    before = tree_digest(dataset)
    r = _label_subprocess(dataset, "--dry-run", "--json", torchrun=2)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["values_from"].startswith("inference on 2 ranks") and out["run"] is None
    assert tree_digest(dataset) == before
    kept = list((tmp_path / "dry-run-values").glob("ds_vlm_label-*/*/episode-*.parquet"))
    assert len(kept) == 3  # both ranks' parts, outside the dataset


# -- bad input: one Error: line, exit 2, nothing changed ---------------------------------------------


def _strip_param(src: Path, dst: Path, name: str) -> Path:
    """A copy of the tiny checkpoint whose Orbax tree metadata lacks one EMA parameter."""
    shutil.copytree(src, dst)
    meta_path = next(dst.glob("step_*")) / "_METADATA"
    meta = json.loads(meta_path.read_text())
    key = "('ema_params', " + ", ".join(repr(p) for p in name.split("/")) + ")"
    assert key in meta["tree_metadata"], key
    del meta["tree_metadata"][key]
    meta_path.write_text(json.dumps(meta))
    return dst


def test_model_bad_inputs(cli, dataset, tmp_path, monkeypatch):
    before = tree_digest(dataset)
    cases = []

    def expect(args, needle):
        r = cli("label", dataset, *args, code=2)
        cases.append(needle)
        assert needle in error_line(r), (needle, error_line(r))

    expect(model_args(ckpt=tmp_path / "nope"), "checkpoint directory not found")
    (tmp_path / "empty_ckpt" / "step_00000009.orbax-checkpoint-tmp-123").mkdir(parents=True)
    expect(model_args(ckpt=tmp_path / "empty_ckpt"), "no complete")
    stripped = _strip_param(TINY_CHECKPOINT, tmp_path / "stripped", "value_head/linear2/bias")
    expect(model_args(ckpt=stripped), "value_head/linear2/bias")
    expect(model_args(tokenizer=tmp_path / "missing.model"), "tokenizer")
    (tmp_path / "bad.model").write_bytes(b"this is not sentencepiece")
    expect(model_args(tokenizer=tmp_path / "bad.model"), "SentencePiece")
    expect(model_args() + ["--base-image-col", "observation.images.nope"], "observation.images.nope")
    if not torch.cuda.is_available():
        expect(model_args("--device", "cuda"), "CUDA is not available")
    assert tree_digest(dataset) == before


def test_damaged_png_and_short_video_name_episode_and_frame(cli, dataset, tmp_path):
    import pyarrow as pa

    ds = DatasetFiles.open(dataset)
    path = ds.episodes[2].data_file
    table = pq.read_table(path)
    i = table.schema.get_field_index("observation.images.base")
    cells = table["observation.images.base"].to_pylist()
    rows = table["episode_index"].to_pylist()
    frames = table["frame_index"].to_pylist()
    k = next(j for j, (e, f) in enumerate(zip(rows, frames)) if e == 2 and f == 5)
    cells[k] = {"bytes": b"\x89PNG broken", "path": cells[k]["path"]}
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(cells, table.schema.field(i).type)), path)
    before = tree_digest(dataset)
    r = cli("label", dataset, *model_args(), code=2)
    assert "episode 2 frame 5" in error_line(r)
    after = tree_digest(dataset)
    # episode 1 was inferred before the damaged frame: its values stay as a resumable cache
    kept = {k for k in after if k.startswith("meta/recap_label/values-partial")}
    assert {k: v for k, v in after.items() if k not in kept} == before


def test_truncated_video_is_one_error_line(cli, dataset):
    ds = DatasetFiles.open(dataset)
    video = ds.episodes[3].videos["observation.images.wrist"].path
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 2 // 3])
    before = tree_digest(dataset)
    r = cli("label", dataset, *model_args(), code=2)
    line = error_line(r)
    assert "cannot open video" in line and "for episode" in line, line  # v3.0: episodes 2 and 3 share this mp4
    after = tree_digest(dataset)
    kept = {k for k in after if k.startswith("meta/recap_label/values-partial")}
    assert {k: v for k, v in after.items() if k not in kept} == before


def test_checkpoint_without_ema_params(cli, dataset, tmp_path):
    ckpt = tmp_path / "no_ema"
    shutil.copytree(TINY_CHECKPOINT, ckpt)
    meta_path = next(ckpt.glob("step_*")) / "_METADATA"
    meta = json.loads(meta_path.read_text())
    meta["tree_metadata"] = {k: v for k, v in meta["tree_metadata"].items() if not k.startswith("('ema_params'")}
    meta_path.write_text(json.dumps(meta))
    before = tree_digest(dataset)
    r = cli("label", dataset, *model_args(ckpt=ckpt), code=2)
    assert "has no ema_params; pass --no-use-ema" in error_line(r)
    assert tree_digest(dataset) == before
    out = json.loads(cli("label", dataset, *model_args("--no-use-ema", "--json", ckpt=ckpt)).stdout)
    assert out["breakdown"]["autonomous"]["none"] == 0


def test_checkpoint_step_and_converted_weights_cache(cli, dataset, tmp_path):
    cache = tmp_path / "model-cache"  # RECAP_LABEL_MODEL_CACHE, set by the lerobot_home fixture
    out = json.loads(cli("label", dataset, *model_args("--checkpoint-step", "2", "--json")).stdout)
    assert out["values_from"] == "inference"
    cached = list(cache.glob("*.safetensors"))
    assert len(cached) == 1 and "ema" in cached[0].name
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(cached[0].stat().st_mode) == 0o666 & ~umask  # shareable as the umask allows, not 0600
    r = cli("label", dataset, *model_args("--checkpoint-step", "7"), code=2)
    assert "7" in error_line(r)


def test_tokenizer_larger_than_the_embedding_table_is_refused_up_front(cli, dataset, tmp_path):
    """A 600-piece tokenizer with the 400-row tiny checkpoint: one Error line naming both sizes,
    before any inference (was an IndexError traceback inside F.embedding)."""
    import io

    import sentencepiece as spm
    from assets.make_tiny_tokenizer import training_sentences

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_sentences()),
        model_writer=model,
        vocab_size=600,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        user_defined_symbols=["\n"],
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    big = tmp_path / "big.model"
    big.write_bytes(model.getvalue())
    before = tree_digest(dataset)
    line = error_line(cli("label", dataset, *model_args(tokenizer=big), code=2))
    assert line == (
        f"Error: tokenizer {big} has 600 pieces (token ids up to 599) but the checkpoint "
        f"{TINY_CHECKPOINT / 'step_00000002'} "
        "has a 400-row token embedding table; they do not belong together, pass the --tokenizer-path the value model "
        "was trained with"
    )
    assert tree_digest(dataset) == before
    assert not (dataset / "meta" / "recap_label" / "values-partial").exists()


def test_dry_run_with_the_model_writes_nothing_in_the_dataset_and_keeps_values_outside(cli, dataset, tmp_path):
    before = tree_digest(dataset)
    dry = json.loads(cli("label", dataset, *model_args("--dry-run", "--json")).stdout)
    assert dry["values_from"] == "inference" and dry["run"] is None
    assert tree_digest(dataset) == before  # was: meta/recap_label/values-partial/ with the parts
    assert not (dataset / "meta" / "recap_label" / "values-partial").exists()
    kept = tmp_path / "dry-run-values"  # beside the model cache (RECAP_LABEL_MODEL_CACHE = tmp_path/model-cache)
    folders = list(kept.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("ds_vlm_label-")
    assert dry["notes"] == [f"values kept outside the dataset for the next `label` of it: {folders[0]}"]
    assert len(list(folders[0].glob("*/episode-*.parquet"))) == 3
    out = json.loads(cli("label", dataset, *model_args("--json")).stdout)
    assert out["values_from"] == f"values kept by an earlier --dry-run in {folders[0]} (no inference)"
    assert not folders[0].exists()  # committed to the sidecar: the kept copy is dropped
    assert out["transitions"] == dry["transitions"] and out["thresholds"] == dry["thresholds"]
    again = json.loads(cli("label", dataset, *model_args("--recompute", "--json")).stdout)
    np.testing.assert_allclose(again["thresholds"]["global"], out["thresholds"]["global"], atol=1e-6)


def test_off_a_terminal_inference_logs_plain_progress_and_reports_its_performance(cli, dataset, monkeypatch):
    """stderr is not a terminal here (as under `| tee`, nohup, SLURM): plain progress lines at a
    steady rhythm (every batch, with the rhythm set to 0 s), loading lines, and the performance in
    the report, in --json and in the run's lineage record."""
    import re

    from recap_label.values import progress
    from support import lineage_json

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    r = cli("label", dataset, *model_args("--batch-size", "7"))
    lines = r.stderr.splitlines()
    assert all(l.startswith("progress: ") for l in lines), lines
    assert lines[0] == f"progress: loading the value model {TINY_CHECKPOINT / 'step_00000002'} (EMA) onto cpu …"
    assert re.fullmatch(r"progress: value model loaded in \d+\.\d s", lines[1])
    assert lines[2] == "progress: inference of 90 frames on cpu started (a line every 0 s)"
    steps = [
        re.fullmatch(
            r"progress: infer ([\d,]+)/90 frames \(([\d.]+) %\) · ([\d.,]+) frames/s · ETA (\d+):(\d\d):(\d\d)", l
        )
        for l in lines[3:-1]
    ]
    assert steps and all(steps), lines
    done = [int(m.group(1).replace(",", "")) for m in steps]
    assert done == sorted(done) and done[-1] == 90 and len(done) >= 90 // 7
    for m in steps:  # the ETA is what the shown rate gives for the frames left (item 11)
        frames, rate = int(m.group(1)), float(m.group(3).replace(",", ""))
        eta = int(m.group(4)) * 3600 + int(m.group(5)) * 60 + int(m.group(6))
        assert abs(eta - (90 - frames) / rate) <= 0.5 + 0.01 * eta
    done_line = re.fullmatch(r"progress: inference done: 90 frames in \d:\d\d:\d\d \(([\d.,]+) frames/s\)", lines[-1])
    assert done_line
    reported = re.search(
        r"^inference: 90 frames at ([\d.,]+) frames/s on cpu, fp32\n  batch 7, 0 workers · checkpoint step 2, EMA$",
        r.stdout,
        re.M,
    )
    assert reported
    # one measurement: the progress line and the report give the same rate (issue 20, item 6)
    assert abs(float(done_line.group(1).replace(",", "")) - float(reported.group(1).replace(",", ""))) <= 0.1
    time_line = re.search(
        r"^time: read (\S+) s · load (\S+) s · fetch (\S+) s · infer (\S+) s · result wait (\S+) s · write (\S+) s · "
        r"other (\S+) s = total (\S+) s$",
        r.stdout,
        re.M,
    )
    assert time_line, r.stdout
    *parts, total = (float(x) for x in time_line.groups())
    assert abs(sum(parts) - total) <= 0.01 * len(parts), time_line.group(0)  # the split adds up
    run = lineage_json(dataset)["runs"][-1]
    perf = run["performance"]
    assert perf["frames"] == 90 and perf["frames_per_s"] > 0 and perf["device"] == "cpu" and perf["precision"] == "fp32"
    assert perf["checkpoint_step"] == 2 and perf["ema"] is True and perf["batch_size"] == 7 and perf["num_workers"] == 0
    assert set(perf["wall_s"]) == {"read", "load", "fetch", "infer", "result_wait", "write"} and all(
        v >= 0 for v in perf["wall_s"].values() if v is not None
    )
    out = json.loads(cli("label", dataset, *model_args("--recompute", "--json")).stdout)
    split = out["performance"]["wall_s"]
    assert abs(sum(v for k, v in split.items() if k != "total") - split["total"]) <= 0.001 * len(split)
    counts = out["performance"]["engine"]
    for key in ("batches", "padded_frames", "decode_workers", "decode_threads_per_worker"):
        assert type(counts[key]) is int, (key, counts[key])  # counts are integers, not 64.0
    assert type(out["performance"]["batch_size"]) is int and type(out["performance"]["frames"]) is int
    assert out["performance"]["frames"] == 90 and out["performance"]["wall_s"]["write"] is not None
    assert set(out["performance"]) >= {"frames_per_s", "wall_s", "device", "precision", "checkpoint_step", "ema"}
    rerun = json.loads(cli("label", dataset, *model_args("--positive-ratio", "0.4", "--json")).stdout)
    assert rerun["values_from"] == "sidecar (no inference)" and rerun["performance"] is None
