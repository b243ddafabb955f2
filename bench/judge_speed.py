"""Judge throughput: comparisons per second on one core (median of repeated runs).

Two fixed mixes of 64 studies (0-3 image findings each, drafts read by the rule reader): an audit-like
mix where most drafts agree with the image, and a random mix where most labels disagree.
Run: python bench/judge_speed.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from auditor.compare import compare
from auditor.draft_rules import read_draft
from auditor.labels import FINDING_LABELS, HUMAN_NAMES
from auditor.schema import Box, Grounding, ImageFinding, ModelInfo, ParseOutcome

MODEL = ModelInfo(backend="bench", model_id="synthetic")


def _draft(rng: random.Random, present: list, absent: list) -> str:
    parts = [f"Small {HUMAN_NAMES[lb].split(' /')[0]}." for lb in present]
    parts += [f"No {HUMAN_NAMES[lb].split(' /')[0]}." for lb in absent]
    rng.shuffle(parts)
    return " ".join(parts) or "No acute cardiopulmonary abnormality."


def studies(n: int, mix: str, seed: int = 0) -> list[tuple[Grounding, object]]:
    """``audit``: drafts mostly agree with the image (60% faithful, then one dropped, added or denied
    finding), as in a real worklist. ``random``: image and draft labels drawn independently."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        on_image = rng.sample(FINDING_LABELS, rng.randint(0, 3))
        findings = []
        for lb in on_image:
            x, y = rng.uniform(0, 0.6), rng.uniform(0, 0.6)
            findings.append(ImageFinding(label=lb, box=Box(x0=x, y0=y, x1=x + 0.3, y1=y + 0.3)))
        others = [lb for lb in FINDING_LABELS if lb not in on_image]
        if mix == "random":
            said = rng.sample(FINDING_LABELS, rng.randint(0, 3))
            present = [lb for lb in said if rng.random() < 0.6]
            absent = [lb for lb in said if lb not in present]
        else:
            present, absent = list(on_image), rng.sample(others, min(2, len(others)))
            change = rng.random()
            if change < 0.13 and present:
                present.pop()
            elif change < 0.26 and absent:
                present.append(absent.pop())
            elif change < 0.4 and present:
                absent.append(present.pop())
        grounding = Grounding(findings=findings, outcome=ParseOutcome.CLEAN, model=MODEL)
        out.append((grounding, read_draft(_draft(rng, present, absent))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--n", type=int, default=20000, help="comparisons per run")
    args = ap.parse_args()
    for mix in ("audit", "random"):
        pairs = studies(64, mix)
        flags = sum(len(compare(g, r).flags) for g, r in pairs) / len(pairs)  # type: ignore[arg-type]
        rates = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for i in range(args.n):
                g, r = pairs[i % len(pairs)]
                compare(g, r)  # type: ignore[arg-type]
            rates.append(args.n / (time.perf_counter() - t0))
        print(
            f"judge ({mix} mix, {flags:.1f} flags per comparison): median {statistics.median(rates):,.0f} "
            f"comparisons/s over {args.repeat} runs of {args.n}"
        )


if __name__ == "__main__":
    main()
