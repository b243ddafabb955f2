"""audit-batch throughput and report size: a 500-study worklist over the 29 NIH radiographs.

Each image gets a scripted grounding (seeded: 0-3 findings with boxes, sometimes no_finding) replayed
through the real recovery; drafts cycle through agreeing, denying, hedging, normal and empty ones, so the
mix has URGENT, MISSING and UNSUPPORTED flags, image-only passes and clean studies. Rule reader. Timed:
the whole run (load, ground, read, compare, draw each picture, stream the lines, summary, report), then
a rerun that finds every study finished (resume cost: reading results back and rebuilding the report).
Figures are printed, never asserted.
Run: python bench/audit_batch.py [--studies 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.batch import PICTURE_BYTES, PICTURE_SIDE, PICTURES, REPORT, RESULTS, read_worklist, run_batch
from auditor.config import Settings
from auditor.labels import FINDING_LABELS

NIH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images"
DRAFTS = (
    "No acute cardiopulmonary abnormality.",
    "Cardiomegaly. No pleural effusion or pneumothorax.",
    "Small right pleural effusion. Heart size is normal.",
    "Possible left lower lobe consolidation versus atelectasis.",
    "Right upper lobe nodule, recommend CT. No pneumothorax.",
    "Moderate cardiomegaly with bilateral pleural effusions.",
    "Small left apical pneumothorax.",
    "Lungs are clear. No focal consolidation, effusion or pneumothorax.",
    "",
    "Stable cardiomediastinal silhouette. Questionable right basilar opacity.",
)


def scripted_output(rng: random.Random) -> str:
    """A MedGemma-style answer ([y0, x0, y1, x1], scale 1) for one image."""
    if rng.random() < 0.2:
        return '[{"label": "no_finding"}]'
    found = []
    for label in rng.sample(FINDING_LABELS, rng.randint(1, 3)):
        y, x = rng.uniform(0.05, 0.55), rng.uniform(0.05, 0.55)
        found.append(
            {"label": label.value, "box_2d": [round(y, 3), round(x, 3), round(y + 0.3, 3), round(x + 0.3, 3)]}
        )
    return json.dumps(found)


def build(folder: Path, studies: int, seed: int = 0) -> tuple[Path, Path]:
    """(worklist.csv, replay.jsonl) in ``folder``: images by relative path, ids s0000..."""
    rng = random.Random(seed)
    images = sorted(NIH.glob("*.png"))
    replay = folder / "replay.jsonl"
    with open(replay, "w", encoding="utf-8") as fh:
        for image in images:
            sha = hashlib.sha256(image.read_bytes()).hexdigest()
            fh.write(json.dumps({"image_sha256": sha, "raw_output": scripted_output(rng)}) + "\n")
    worklist = folder / "worklist.csv"
    with open(worklist, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "image", "draft", "age_years", "view"])
        for i in range(studies):
            age = "" if i % 7 else str(rng.randint(3, 90))
            view = ("PA", "AP", "")[i % 3]
            source = str(images[i % len(images)].resolve())
            writer.writerow(
                [f"s{i:04d}", source, DRAFTS[(i * 7 + i // len(images)) % len(DRAFTS)], age, view]
            )
    return worklist, replay


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def arguments(parser: argparse.ArgumentParser, studies: int) -> argparse.Namespace:
    """--studies and --keep (shared with bench/report_scale.py); the NIH images must be there."""
    parser.add_argument("--studies", type=int, default=studies)
    parser.add_argument("--keep", help="write the run here (default: a temporary folder)")
    args = parser.parse_args()
    if not NIH.is_dir():
        raise SystemExit(f"NIH images not found at {NIH}")
    return args


@contextlib.contextmanager
def bench_folder(keep: str | None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder


@dataclass(frozen=True)
class Runs:
    """A whole run of the worklist, then a rerun that finds every study finished."""

    out: Path
    summary: dict[str, Any]
    run_s: float
    rerun: dict[str, Any]
    rerun_s: float


def run_twice(folder: Path, studies: int) -> Runs:
    worklist, replay = build(folder, studies)
    settings = Settings(grounder="replay", replay=replay, reader="rules")
    out = folder / "out"
    t0 = time.perf_counter()
    summary = run_batch(read_worklist(worklist), out, settings)
    run_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rerun = run_batch(read_worklist(worklist), out, settings)
    return Runs(out, summary, run_s, rerun, time.perf_counter() - t0)


def main() -> None:
    args = arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]), 500)
    with bench_folder(args.keep) as folder:
        runs = run_twice(folder, args.studies)
        out, summary, run_s, rerun, rerun_s = runs.out, runs.summary, runs.run_s, runs.rerun, runs.rerun_s
        pictures = list((out / PICTURES).glob("*.jpg"))
        mean_kb = sum(p.stat().st_size for p in pictures) / max(1, len(pictures)) / 1e3
        print(f"studies: {summary['studies']} ({summary['audited']} audited, {summary['failed']} failed)")
        print(f"flags: {summary['flags']}; studies with URGENT: {summary['studies_with_urgent']}")
        print(f"modes: {summary['modes']}")
        print(
            f"full run: {run_s:.2f} s = {summary['studies'] / run_s:.1f} studies/s (replay + rules, 1 worker)"
        )
        print(f"rerun, all {rerun['resumed']} finished: {rerun_s:.2f} s (read back + summary + report)")
        print(f"report.html: {size_mb(out / REPORT):.1f} MB; results.jsonl: {size_mb(out / RESULTS):.1f} MB")
        cap = f"JPEG, max side {PICTURE_SIDE} px, cap {PICTURE_BYTES // 1000} KB; thumbs: pictures/small"
        print(f"pictures: {len(pictures)}, mean {mean_kb:.0f} KB ({cap})")


if __name__ == "__main__":
    main()
