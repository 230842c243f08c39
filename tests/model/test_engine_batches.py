"""The engine's fixed-shape batches: frames stream across episode ends into batches of one size,
values come back a couple of batches late (no host sync), and cameras of another size than the
model's are letterboxed on the device; none of it changes a value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recap_label.demo import synth
from recap_label.lerobot.dataset import DatasetFiles

from support import TINY_CHECKPOINT, TINY_TOKENIZER, episode_frames

BASE, WRIST = "observation.images.base", "observation.images.wrist"


@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory):
    """Rollouts of uneven lengths; a 37x53 PNG base camera and a 32x32 AV1 wrist camera."""
    spec = synth.simple_spec("v2.1", episodes=5, length=23, demos=0, png_cameras=1, video_cameras=1, size=32)
    spec.cameras[BASE] = synth.CameraSpec("image", 37, 53)
    for i, ep in enumerate(spec.episodes):
        ep.length = 17 + 3 * i  # 17, 20, 23, 26, 29: most episodes end inside a batch
        ep.interventions = [(2, 5)]
    root = tmp_path_factory.mktemp("odd") / "ds"
    synth.write_dataset(root, spec)
    return root


def engine(tmp_path, batch: int, workers: int = 0, device_letterbox: bool = False):
    from recap_label.values.engine import Engine

    return Engine(
        step_dir=TINY_CHECKPOINT,
        use_ema=True,
        tokenizer_path=TINY_TOKENIZER,
        model_cache=tmp_path / "models",
        device="cpu",
        batch_size=batch,
        num_workers=workers,
        precision="fp32",
        compile_model=False,
        quiet=True,
        device_letterbox=device_letterbox,
    )


def per_episode_values(model, ds: DatasetFiles, episode: int, batch: int) -> np.ndarray:
    """What the engine computed before fixed-shape batches: batches that stop at the episode's end."""
    from recap_label.model.preprocess import PromptTokenizer, letterbox, to_model_input

    size = model.config.image_size
    cams = [letterbox(episode_frames(ds, episode, col), size) for col in (BASE, WRIST)]
    images = torch.from_numpy(np.stack(cams, axis=1))
    task = int(ds.episode_rows(episode, ["task_index"])["task_index"][0].as_py())
    tokens = torch.from_numpy(PromptTokenizer(TINY_TOKENIZER).tokenize(ds.tasks[task])[0].astype(np.int64))
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = images[start : start + batch]
            tok = tokens.expand(len(x), -1)
            out.append(model(to_model_input(x), torch.ones(len(x), 2, dtype=torch.bool), tok, tok != 0).numpy())
    return np.concatenate(out)


def run(eng, ds, episodes):
    return {ev.episode_index: ev for ev in eng.episode_values(ds, episodes, [BASE, WRIST])}


def test_fixed_batches_give_the_per_episode_values(odd_dataset, tmp_path):
    ds = DatasetFiles.open(odd_dataset)
    episodes = sorted(ds.episodes)
    eng = engine(tmp_path, batch=8)
    got = run(eng, ds, episodes)
    assert sorted(got) == episodes
    total = sum(ds.episodes[e].length for e in episodes)
    # one shape for every batch: ceil(total / 8) batches, only the last one padded
    assert eng.stats["batches"] == -(-total // 8) and eng.stats["padded_frames"] == -total % 8
    for ep in episodes:
        np.testing.assert_array_equal(got[ep].frame_index, np.arange(ds.episodes[ep].length))
        want = per_episode_values(eng.model, ds, ep, 8)
        np.testing.assert_allclose(got[ep].value, want, rtol=0, atol=1e-6)


def test_device_letterbox_path_equals_the_worker_letterbox(odd_dataset, tmp_path):
    ds = DatasetFiles.open(odd_dataset)
    episodes = sorted(ds.episodes)
    host = run(engine(tmp_path, batch=6), ds, episodes)
    device = engine(tmp_path, batch=6, device_letterbox=True)
    on_device = run(device, ds, episodes)
    assert device.stats["device_letterbox"] == 1.0
    for ep in episodes:
        np.testing.assert_array_equal(on_device[ep].value, host[ep].value)


def test_workers_split_episodes_and_each_pads_only_its_last_batch(odd_dataset, tmp_path):
    ds = DatasetFiles.open(odd_dataset)
    episodes = sorted(ds.episodes)
    one = run(engine(tmp_path, batch=8), ds, episodes)
    eng = engine(tmp_path, batch=8, workers=2)
    two = run(eng, ds, episodes)
    for ep in episodes:
        np.testing.assert_allclose(two[ep].value, one[ep].value, rtol=0, atol=1e-6)
    mine = [episodes[0::2], episodes[1::2]]
    assert eng.stats["batches"] == sum(-(-sum(ds.episodes[e].length for e in m) // 8) for m in mine)


@pytest.mark.slow
def test_compiled_forward_gives_the_eager_values_on_the_cpu(odd_dataset, tmp_path):
    """--compile traces the model once per batch shape (on CUDA with CUDA graphs; here inductor's CPU code)."""
    from recap_label.values.engine import Engine

    ds = DatasetFiles.open(odd_dataset)
    episodes = sorted(ds.episodes)
    eager = run(engine(tmp_path, batch=8), ds, episodes)
    compiled_engine = Engine(
        step_dir=TINY_CHECKPOINT,
        use_ema=True,
        tokenizer_path=TINY_TOKENIZER,
        model_cache=tmp_path / "models",
        device="cpu",
        batch_size=8,
        num_workers=0,
        precision="fp32",
        compile_model=True,
        quiet=True,
    )
    compiled = run(compiled_engine, ds, episodes)
    assert compiled_engine.forward_fn() is not compiled_engine.model  # the compiled wrapper ran
    for ep in episodes:
        np.testing.assert_allclose(compiled[ep].value, eager[ep].value, rtol=0, atol=1e-5)
