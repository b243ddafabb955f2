"""Radiograph-like test images for a clone without ../shared: a frontal chest shape drawn with numpy.

They stand in for the NIH sample images under the same file names, so the tests that need *an* image
(the tools, the transports, the batch and eval plumbing, all driven by replayed model outputs keyed by
the image's sha256) run everywhere. They are not chest X-rays: nothing measured on them means anything
clinically, and the tests that score real images still skip without ../shared.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 1024


def synthetic_radiograph(name: str, side: int = SIDE) -> Image.Image:
    """An 8-bit greyscale frontal chest shape: dark lungs, a bright mediastinum and spine, ribs, and
    a little noise seeded by ``name`` (so each name gives its own, reproducible bytes)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    y, x = (np.mgrid[0:side, 0:side] / np.float32(side)).astype(np.float32)
    body = np.exp(-(((x - 0.5) / 0.44) ** 8 + ((y - 0.6) / 0.55) ** 8))
    lungs = sum(np.exp(-(((x - cx) / 0.15) ** 4 + ((y - 0.47) / 0.27) ** 4)) for cx in (0.31, 0.69))
    ribs = 0.5 + 0.5 * np.sin(y * 2 * np.pi * 10 + 8 * (x - 0.5) ** 2)
    spine = np.exp(-(((x - 0.5) / 0.045) ** 2))
    heart = np.exp(-(((x - 0.56) / 0.13) ** 2 + ((y - 0.64) / 0.11) ** 2))
    tone = 0.1 + 0.7 * body - 0.5 * lungs * (1 - 0.3 * ribs) + 0.2 * spine + 0.35 * heart
    tone += rng.normal(0.0, 0.02, size=tone.shape).astype(np.float32)
    return Image.fromarray((np.clip(tone, 0.0, 1.0) * 255).astype(np.uint8), mode="L")


def write_radiographs(folder: Path, modes: dict[str, str]) -> Path:
    """Each name as a PNG in ``folder`` (made if missing) in its PIL mode: "L", or "RGBA" (grey in every
    channel, opaque), as some NIH files are stored and the loader then notes a conversion."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, mode in modes.items():
        synthetic_radiograph(name).convert(mode).save(folder / name)
    return folder
