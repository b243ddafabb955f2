"""The real-size benchmark and the GPU script stay runnable: their CPU dry run (tiny models of the
real architectures) goes end to end here, so the one GPU run a session may get is not spent on a
broken script. Nothing is timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]


def test_device_run_dry_run_writes_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "device_run.sh"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "real_size-smoke.json").read_text(encoding="utf-8"))
    assert result["size"] == "tiny" and result["device"] == "cpu"
    for role in ("grounder", "reader"):
        assert result["models"][role]["parameters"] > 0 and result["models"][role]["decode_bytes"] > 0
    audit = result["audit_batch1"]
    assert audit["repeats"] == 2 and audit["p50_ms"] > 0 and audit["p90_ms"] >= audit["p50_ms"]
    # random weights: garbage flows into visible outcomes, never a crash
    assert audit["grounding"]["outcome"] in ("failed", "recovered", "clean")
    assert {"prefill", "decode"} <= set(audit["grounding"]["timings_ms"])
    assert audit["grounding"]["tokens"]["generated"] >= 1
    if audit["reading"]["notes"][:1] == ["reader_fallback_rules"]:
        assert audit["reader_model_attempt"]["notes"]  # the model's own reading is kept
    assert result["bandwidth_floor"]["audit_floor_ms"] > 0
    worklist = result["worklist"]
    assert worklist["studies"] == 4 and sum(worklist["grounding_batches"]) == 4
