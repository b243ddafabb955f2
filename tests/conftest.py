"""Shared fixtures: the real NIH radiographs from ../shared/data (radiograph-like stand-ins where it is
absent) and a replay file of recorded generations for them, so the whole loop runs end to end without
model weights."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
NIH_IMAGES = SHARED / "data" / "nih" / "images"

# Three real images and scripted grounding outputs for them (test fixtures, not model results;
# boxes in MedGemma order, scale 1).
URGENT_PNG = "00001369_000.png"
NORMAL_PNG = "00000004_000.png"
GARBLED_PNG = "00001933_000.png"
UNRECORDED_PNG = "00002578_000.png"
RECORDED_OUTPUTS = {
    URGENT_PNG: json.dumps(
        [
            {"label": "pneumothorax", "box_2d": [0.10, 0.55, 0.45, 0.90]},
            {"label": "cardiomegaly", "box_2d": [0.45, 0.30, 0.80, 0.75]},
        ]
    ),
    NORMAL_PNG: '[{"label": "no_finding"}]',
    GARBLED_PNG: "I think this chest X-ray shows some findings but I cannot say where.",
}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SAMPLE_MODES = {
    URGENT_PNG: "RGBA",
    NORMAL_PNG: "RGBA",
    GARBLED_PNG: "L",
    UNRECORDED_PNG: "RGBA",
    "00004296_000.png": "L",
    "00009745_000.png": "L",
}
"""The samples the tests open through ``nih_images``, each in the mode its NIH file is stored in."""


@pytest.fixture(scope="session")
def nih_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real NIH radiographs when ../shared is beside the clone; otherwise radiograph-like stand-ins
    under the same names (tests/radiographs.py), so a fresh clone runs the same tool and plumbing tests.
    Model outputs are replayed by image sha256, so either set drives the same code paths.
    ``CXR_TEST_STAND_INS=1`` uses the stand-ins even where ../shared is present (the README's viewer
    screenshot is made that way, so no NIH pixels are copied into the repository)."""
    if NIH_IMAGES.is_dir() and not os.environ.get("CXR_TEST_STAND_INS"):
        return NIH_IMAGES
    from tests.radiographs import write_radiographs

    return write_radiographs(tmp_path_factory.mktemp("nih_stand_ins"), SAMPLE_MODES)


@pytest.fixture(scope="session")
def replay_file(nih_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "recorded.jsonl"
    lines = [
        json.dumps(
            {
                "image_sha256": sha256_of(nih_images / name),
                "raw_output": raw,
                "model": "scripted-test-fixture",
            }
        )
        for name, raw in RECORDED_OUTPUTS.items()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
