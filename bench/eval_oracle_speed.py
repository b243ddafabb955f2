"""Oracle-grounded audit evaluation speed: wall time for a whole run over the ChestX-Det images.

A full `eval audit --grounder oracle --reader rules` run as the CLI does it: read the datasets, write
a synthetic draft per image, read it with the rule reader, judge it, append each record to
items.jsonl, then score and write metrics.json and report.md. The target is 3,500 images in under
60 s on one CPU core. Never a timed assert; run it by hand:

    python bench/eval_oracle_speed.py [--repeat 3] [--dataset KIND:PATH ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from auditor.backends.rules import RulesReader
from auditor.eval.datasets import load_all, parse_spec
from auditor.eval.grounders import OracleItemGrounder
from auditor.eval.runs import RunPlan, execute

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEFAULT = [
    f"chestx-det:{DATA / 'chestx_det' / 'ChestX_Det_train.json'}",
    f"chestx-det:{DATA / 'chestx_det' / 'ChestX_Det_test.json'}",
]


def one_run(specs: list[str], out: Path) -> tuple[float, int, dict[str, object]]:
    t0 = time.perf_counter()
    items, loaded = load_all([parse_spec(s) for s in specs])
    reader = RulesReader()
    state = reader.state()
    plan = RunPlan(
        command="audit",
        items=items,
        datasets=loaded,
        grounder=OracleItemGrounder(items),
        out=out,
        reader=reader.read,
        reader_info={"backend": state.backend, "model_id": state.model_id},
        progress=False,
    )
    metrics = execute(plan)
    return time.perf_counter() - t0, len(items), metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", action="append", help="KIND:PATH (default: ChestX-Det train + test)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    specs = args.dataset or DEFAULT
    times = []
    n = 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, n, metrics = one_run(specs, Path(tmp) / "run")
        times.append(seconds)
    integrity = metrics["integrity"]
    print(
        f"oracle audit eval: {n} images, median {statistics.median(times):.2f} s over {args.repeat} runs "
        f"(min {min(times):.2f}, max {max(times):.2f}; {n / statistics.median(times):,.0f} images/s); "
        f"integrity {integrity}"
    )


if __name__ == "__main__":
    main()
