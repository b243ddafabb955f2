"""Rule reader throughput: drafts per second on one core over the Open-i dev set (median of runs).

Run: python bench/reader_speed.py [--csv ../shared/data/openi/openi_dev.csv] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from auditor.draft_rules import read_draft
from auditor.eval.openi import read_reports

DEFAULT_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "openi" / "openi_dev.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    texts = [item.text for item in read_reports(args.csv)]
    rates = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for text in texts:
            read_draft(text)
        rates.append(len(texts) / (time.perf_counter() - t0))
    print(
        f"rule reader: median {statistics.median(rates):,.0f} drafts/s over {args.repeat} runs "
        f"of {len(texts)} reports (min {min(rates):,.0f}, max {max(rates):,.0f})"
    )


if __name__ == "__main__":
    main()
