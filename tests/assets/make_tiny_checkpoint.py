"""Write the tiny Stage-4 checkpoint with the real Orbax library, exactly as pistar saves it.

pistar's train_value.py calls `ocp.PyTreeCheckpointer().save(step_dir, {"params": ..., "step": int,
"ema_params": ...})` with orbax-checkpoint 0.11.13. JAX and Orbax are NOT project dependencies,
so run this once from a throwaway environment:

    python3.11 -m venv /tmp/jaxenv
    /tmp/jaxenv/bin/pip install "jax[cpu]==0.5.3" "orbax-checkpoint==0.11.13" "numpy<2"
    PYTHONPATH=. /tmp/jaxenv/bin/python tests/assets/make_tiny_checkpoint.py

It writes recap_label/assets/tiny_value_ckpt/step_00000002/ (params and a different EMA tree) with
the tiny architecture of `recap_label.demo.tiny_model.tiny_config`, sized to the tiny tokenizer's
vocabulary; the demo and the tests use it. Tests that need more steps (older, tmp, half-written)
build them from copies of this one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from recap_label.demo.tiny_model import TINY_CHECKPOINT, random_flat_params, tiny_config

OUTPUT = TINY_CHECKPOINT
TINY_VOCAB = 400  # recap_label/assets/tiny_tokenizer.model


def nest(flat: dict[str, np.ndarray]) -> dict:
    """'/'-joined names -> the nested pure dict pistar saves (arrays as jax.Array, like training)."""
    tree: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = jnp.asarray(value)
    return tree


def ema_of(flat: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """A distinct EMA tree: small perturbation everywhere, so values differ measurably."""
    rng = np.random.default_rng(seed)
    return {
        name: (value + 0.05 * np.abs(value).mean() * rng.standard_normal(value.shape)).astype(np.float32)
        for name, value in flat.items()
    }


def write_step(root: Path, step: int, seed: int) -> Path:
    config = tiny_config(vocab_size=TINY_VOCAB)
    params = random_flat_params(config, seed=seed)
    ema = ema_of(params, seed=seed + 1000)
    path = root / f"step_{step:08d}"
    if path.exists():
        shutil.rmtree(path)
    tree = {"params": nest(params), "step": int(step), "ema_params": nest(ema)}
    ocp.PyTreeCheckpointer().save(path.resolve(), tree)
    return path


def main() -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = write_step(OUTPUT, step=2, seed=22)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"wrote {path} ({size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
