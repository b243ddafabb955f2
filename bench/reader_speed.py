"""Rule reader throughput, in-process and as a whole process.

In-process: drafts per second on one core over the Open-i dev set (median of runs); the floor is
5,000/s. Whole process (``--process``): ``cxr-auditor parse-draft --batch`` over the same reports as
JSONL, timed from spawn to exit (interpreter start, imports, reading, one JSON line out per report),
beside `bench/keyword_matcher.py`, a plain keyword matcher run the same way in its two forms (one
alternation, the fastest; one search per term, the usual); runs alternate so all see the same machine
load. The figure is the reader's throughput over each matcher's (keyword time / reader time, median of
runs). Which matcher "a plain keyword matcher" means decides the figure (0.18 against one, 1.27 against
the other on the 2-core dev machine), so both are printed.

Run: python bench/reader_speed.py [--csv ../shared/data/openi/openi_dev.csv] [--repeat 5] [--process]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from auditor.draft_rules import read_draft
from auditor.eval.openi import read_reports
from auditor.labels import FREE_TEXT_TERMS

DEFAULT_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "openi" / "openi_dev.csv"
KEYWORD_MATCHER = Path(__file__).resolve().parent / "keyword_matcher.py"


def in_process(texts: list[str], repeat: int) -> None:
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for text in texts:
            read_draft(text)
        rates.append(len(texts) / (time.perf_counter() - t0))
    print(
        f"rule reader in-process: median {statistics.median(rates):,.0f} drafts/s over {repeat} runs "
        f"of {len(texts)} reports (min {min(rates):,.0f}, max {max(rates):,.0f})"
    )


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def whole_process(items: list[tuple[str, str]], repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, vocab = Path(tmp) / "in.jsonl", Path(tmp) / "vocab.json"
        src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in items), encoding="utf-8")
        vocab.write_text(json.dumps({k: v.value if v else None for k, v in FREE_TEXT_TERMS.items()}))
        reader = [str(Path(sys.executable).parent / "cxr-auditor"), "parse-draft", "--batch", str(src)]
        reader += ["--out", str(Path(tmp) / "reader.jsonl")]
        keywords = [sys.executable, str(KEYWORD_MATCHER), str(vocab), str(src), str(Path(tmp) / "kw.jsonl")]
        commands = {
            "parse-draft --batch": reader,
            "keyword matcher": keywords,
            "keyword matcher --per-term": [*keywords, "--per-term"],
        }
        for cmd in commands.values():
            _timed(cmd)  # warm the file cache and the bytecode
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):  # interleaved, so that every command sees the same machine load
            for name, cmd in commands.items():
                times[name].append(_timed(cmd))
    n = len(items)
    ours = times["parse-draft --batch"]
    print(f"whole process over {n} reports, median of {repeat} interleaved runs:")
    for name, runs in times.items():
        ratios = [k / r for k, r in zip(runs, ours, strict=True)]
        print(
            f"  {name:28s} {statistics.median(runs):.3f} s ({n / statistics.median(runs):,.0f} reports/s)"
            + (
                ""
                if runs is ours
                else f"; reader throughput / this: {statistics.median(ratios):.2f} "
                f"(runs {min(ratios):.2f}-{max(ratios):.2f})"
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--process", action="store_true", help="also time whole processes against a keyword matcher"
    )
    args = ap.parse_args()
    items = [(item.id, item.text) for item in read_reports(args.csv)]
    in_process([t for _, t in items], args.repeat)
    if args.process:
        whole_process(items, args.repeat)


if __name__ == "__main__":
    main()
