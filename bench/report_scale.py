"""report.html at worklist scale: what a study costs the page, and how soon headless Chromium has it
interactive, for a real audit-batch run (replay grounder, rule reader, pictures drawn) of N studies
(default 5,000) over the NIH radiographs, with the worklist mix of bench/audit_batch.py.

Browser figures come from the page's own Performance API (milliseconds from navigation start), read
over the DevTools protocol (tests/chromium.py): ``domInteractive``, the script's ``report-ready`` mark
(first page of rows in the table, filters live), the load event; then, in the page, one filter change
over every study and one "show more" page. Median of ``--runs`` fresh tabs. Printed, never asserted.
Run: python bench/report_scale.py [--studies 5000] [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit_batch import arguments, bench_folder, run_twice  # noqa: E402  (bench/ is on sys.path)

from auditor.batch import PICTURES, REPORT  # noqa: E402
from auditor.batch.pictures import THUMBS  # noqa: E402

TIMINGS = """(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const ready = performance.getEntriesByName("report-ready")[0];
  const boxes = Array.from(document.querySelectorAll("#filters input"));
  const t0 = performance.now();
  for (const b of boxes) { if (b.checked !== (b.value === "URGENT")) b.click(); }
  const filter = performance.now() - t0;
  const urgent = Number(document.getElementById("shown").textContent);
  for (const b of boxes) { if (!b.checked) b.click(); }
  const t1 = performance.now();
  document.getElementById("more").click();
  const more = performance.now() - t1;
  return {
    dom_interactive: nav.domInteractive, ready: ready ? ready.startTime : null,
    load: nav.loadEventEnd, filter_urgent_only: filter, show_more: more, urgent_rows: urgent,
    rows_in_table: document.querySelectorAll("#studies tbody tr").length,
    heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null,
  };
})()"""


def browser_figures(report: Path, runs: int) -> dict[str, float]:
    from tests.chromium import CHROMIUM, chromium

    if not CHROMIUM.exists():
        raise SystemExit(f"headless Chromium not found at {CHROMIUM}: sizes above, no browser figures")
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as profile, chromium(Path(profile) / "p") as cdp:
        for _ in range(runs):
            session = cdp.open(report.resolve().as_uri())
            samples.append(cdp.js(session, TIMINGS))
            cdp.call("Page.close", session=session)
    return {k: statistics.median(s[k] for s in samples) for k in samples[0] if samples[0][k] is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh browser tabs to take the median over")
    args = arguments(parser, 5000)
    with bench_folder(args.keep) as folder:
        runs = run_twice(folder, args.studies)
        out, summary, run_s, rerun_s = runs.out, runs.summary, runs.run_s, runs.rerun_s
        page = (out / REPORT).stat().st_size
        thumbs = [p.stat().st_size for p in (out / THUMBS).glob("*.jpg")]
        full = [p.stat().st_size for p in (out / PICTURES).glob("*.jpg")]
        n = summary["studies"]
        print(f"studies: {n} ({summary['audited']} audited); with URGENT: {summary['studies_with_urgent']}")
        print(f"run: {run_s:.1f} s; rerun with every study finished (read back + report): {rerun_s:.2f} s")
        print(f"report.html: {page / 1e6:.1f} MB = {page / n / 1e3:.1f} KB a study (budget 15 KB)")
        print(
            f"thumbnails (embedded): mean {statistics.mean(thumbs) / 1e3:.1f} KB, "
            f"max {max(thumbs) / 1e3:.1f} KB; pictures beside the page: {len(full)}, "
            f"mean {statistics.mean(full) / 1e3:.0f} KB"
        )
        figures = browser_figures(out / REPORT, args.runs)
        print(f"headless Chromium, median of {args.runs} fresh tabs (ms from navigation start):")
        for key, value in figures.items():
            print(f"  {key}: {value:.1f}")


if __name__ == "__main__":
    main()
