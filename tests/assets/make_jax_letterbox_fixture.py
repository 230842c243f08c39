"""Record openpi's resize_with_pad (real jax.image.resize) outputs for the letterbox test.

JAX is not a project dependency; run from the throwaway env described in make_tiny_checkpoint.py:

    PYTHONPATH=. /tmp/jaxenv/bin/python tests/assets/make_jax_letterbox_fixture.py

Inputs are deterministic arithmetic patterns (see `pattern_image`, shared with the test), outputs
are kept small (64 px) so the fixture stays a few tens of kilobytes.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

OUTPUT = Path(__file__).resolve().parent / "jax_letterbox.npz"
CASES = [
    (37, 23, 64),
    (23, 37, 64),
    (300, 199, 64),
    (199, 300, 64),
    (40, 30, 64),
    (30, 50, 64),
    (64, 64, 64),
    (96, 80, 64),
    (30, 20, 45),
    (20, 30, 45),
    (256, 256, 224),
]


def pattern_image(height: int, width: int) -> np.ndarray:
    """A mix of smooth gradients and high-frequency texture, identical on every platform."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((x * 7 + y * 13 + c * 50 + (x * y) % 17 * 9 + (x * x + 3 * y) % 11 * 5) % 256).astype(np.uint8)


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """openpi.shared.image_tools.resize_with_pad for one uint8 image (same expressions)."""
    cur_height, cur_width = image.shape[:2]
    ratio = max(cur_width / width, cur_height / height)
    resized_height, resized_width = int(cur_height / ratio), int(cur_width / ratio)
    resized = jax.jit(
        lambda im: jax.image.resize(im, (resized_height, resized_width, 3), method=jax.image.ResizeMethod.LINEAR)
    )(image)
    resized = jnp.round(resized).clip(0, 255).astype(jnp.uint8)
    pad_h0, rem_h = divmod(height - resized_height, 2)
    pad_w0, rem_w = divmod(width - resized_width, 2)
    return np.asarray(jnp.pad(resized, ((pad_h0, pad_h0 + rem_h), (pad_w0, pad_w0 + rem_w), (0, 0))))


def main() -> None:
    arrays = {}
    for h, w, size in CASES:
        arrays[f"{h}x{w}_to_{size}"] = resize_with_pad(pattern_image(h, w), size, size)
    np.savez_compressed(OUTPUT, **arrays)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
