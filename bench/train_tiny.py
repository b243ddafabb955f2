"""Training throughput of `train sft` through our own loop: tokens per second and memory.

The records are the real pipeline's: the NIH radiographs with their radiologist boxes (from
../shared/data, synthetic grey images when it is absent) turned into SFT records by `train corpus`'s
builder with the real grounding prompt, then LoRA (rank 16, alpha 16) on the text tower's projections,
one example per forward pass, as `cxr-auditor train sft` runs it. The base is the tiny random Gemma3
(CPU figures for the tiny run only); ``--size real`` builds the MedGemma-4B-shaped random checkpoint
for a GPU session (bf16 LoRA; not run on this 2-core machine). Random weights cost what trained ones
cost: the figures depend on the architecture and the token counts, not on the weight values.

Reported: seconds per step (median), tokens per second over all tokens (image and prompt included) and
over the scored (assistant) tokens, the loss of the first and last step, peak RSS, and on a GPU the
peak allocated memory. The first ``--warmup`` steps are left out of the rates.

Run: python bench/train_tiny.py [--steps 20] [--threads 1] [--size tiny|real] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from auditor.train.records import SftRecord

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
NIH = ROOT / ".." / "shared" / "data" / "nih"


def _records(folder: Path) -> list[SftRecord]:
    from auditor.eval.datasets import DatasetSpec
    from auditor.prompts import grounding_prompt
    from auditor.recovery import BoxFormat
    from auditor.train.corpus import build_corpus

    fmt = BoxFormat()
    if (NIH / "BBox_List_2017.csv").is_file() and (NIH / "images").is_dir():
        build, _ = build_corpus(
            [DatasetSpec("nih-bbox", NIH / "BBox_List_2017.csv")], NIH / "images", fmt, grounding_prompt(fmt)
        )
        return build.records
    from PIL import Image

    from auditor.labels import Label
    from auditor.train.records import new_record
    from auditor.train.targets import TrainFinding

    out = []
    for i in range(4):
        path = folder / f"grey{i}.png"
        Image.new("L", (1024, 1024), 60 + 40 * i).save(path)
        found = [TrainFinding(Label.CARDIOMEGALY, (0.3, 0.45, 0.75, 0.8))] if i % 2 else []
        out.append(
            new_record(
                id=path.name,
                source="synthetic",
                image=str(path),
                group=path.name,
                findings=found,
                prompt=grounding_prompt(fmt),
                fmt=fmt,
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: the tiny model gains nothing)"
    )
    ap.add_argument("--size", choices=["tiny", "real"], default="tiny")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--out", help="also write the figures as JSON here")
    args = ap.parse_args()

    import torch
    import transformers

    from auditor.testing.checkpoints import write_grounder
    from auditor.train.sft import SftConfig, train

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        base = write_grounder(Path(tmp) / "base", args.size, device=args.device)
        records = _records(Path(tmp))
        config = SftConfig(
            base=str(base),
            train=Path(tmp) / "none.jsonl",
            out=Path(tmp) / "run",
            max_steps=args.steps,
            device=args.device,
            quantize="none",
            save_every=10**9,
        )
        started = time.perf_counter()
        result = train(config, records=records)
        wall = time.perf_counter() - started
        log = [json.loads(line) for line in (config.out / "train_log.jsonl").read_text().splitlines()]
    steps = log[args.warmup :]
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(log[args.warmup - 1 :], steps, strict=False)]
    span = sum(times)
    figures = {
        "size": args.size,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "records": len(records),
        "steps_measured": len(steps),
        "seconds_per_step_median": round(statistics.median(times), 4),
        "tokens_per_step_mean": round(sum(e["tokens"] for e in steps) / len(steps), 1),
        "tokens_per_s": round(sum(e["tokens"] for e in steps) / span, 1),
        "scored_tokens_per_s": round(sum(e["target_tokens"] for e in steps) / span, 1),
        "loss_first_last": [round(result.losses[0], 4), round(result.losses[-1], 4)],
        "wall_s_with_load": round(wall, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mib": round(result.peak_memory_bytes / 2**20, 1) if result.peak_memory_bytes else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "cpu_count": os.cpu_count(),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
