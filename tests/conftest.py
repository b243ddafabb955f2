"""Shared fixtures: the real NIH radiographs from ../shared/data and a replay file of recorded
generations for them, so the whole loop runs end to end without model weights."""

from __future__ import annotations

import hashlib
import json
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


@pytest.fixture(scope="session")
def nih_images() -> Path:
    if not NIH_IMAGES.is_dir():
        pytest.skip(f"shared NIH images not found at {NIH_IMAGES}")
    return NIH_IMAGES


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
