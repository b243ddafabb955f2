"""MCP over stdio, as Claude Desktop runs it: cold start and the parse_draft + compare round trip.

cold start = from spawning `cxr-auditor serve` to `tools/list` answered (median of --starts runs);
round trip = one parse_draft call then one compare call on the same session (median of --calls).
baseline = the same cold start for bench/noop_server.py (one trivial tool on the same SDK), run the
same way, interleaved with ours; the ratio is what start-up costs beyond the SDK itself.
Run: python bench/mcp_stdio.py [--starts 10] [--calls 200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / ".." / "shared" / "data" / "nih" / "images" / "00001369_000.png"
CLI = str(Path(sys.executable).parent / "cxr-auditor")
DRAFT = "Cardiomegaly is present. No pneumothorax, effusion or focal consolidation."
GROUNDING = {
    "findings": [{"label": "pneumothorax", "box": {"x0": 0.55, "y0": 0.1, "x1": 0.9, "y1": 0.45}}],
    "outcome": "clean",
    "model": {"backend": "bench", "model_id": "fixed"},
}


def replay_file(folder: Path) -> Path:
    path = folder / "replay.jsonl"
    sha = hashlib.sha256(IMAGE.read_bytes()).hexdigest() if IMAGE.is_file() else "0" * 64
    path.write_text(json.dumps({"image_sha256": sha, "raw_output": '[{"label": "no_finding"}]'}) + "\n")
    return path


async def cold_start(params: StdioServerParameters) -> float:
    t0 = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        return time.perf_counter() - t0


async def round_trips(params: StdioServerParameters, calls: int) -> list[float]:
    times = []
    async with Client(params) as client:
        await client.list_tools()
        for _ in range(calls):
            t0 = time.perf_counter()
            r = await client.call_tool("parse_draft", {"draft": DRAFT})
            c = await client.call_tool("compare", {"grounding": GROUNDING, "reading": r.structured_content})
            times.append(time.perf_counter() - t0)
            assert not c.is_error
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        params = StdioServerParameters(
            command=CLI, args=["serve", "--grounder", "replay", "--replay", str(replay_file(Path(tmp)))]
        )
        noop = StdioServerParameters(command=sys.executable, args=[str(ROOT / "bench" / "noop_server.py")])
        starts, base = [], []
        for _ in range(args.starts):
            starts.append(anyio.run(cold_start, params))
            base.append(anyio.run(cold_start, noop))
        trips = anyio.run(round_trips, params, args.calls)
    cold, baseline = statistics.median(starts) * 1000, statistics.median(base) * 1000
    print(
        f"cold start to tools/list over stdio: median {cold:.0f} ms; no-op server on the same SDK "
        f"{baseline:.0f} ms; ratio {cold / baseline:.2f}x ({args.starts} runs each)"
    )
    print(
        f"parse_draft + compare round trip over stdio: median {statistics.median(trips) * 1000:.2f} ms, "
        f"p90 {sorted(trips)[int(0.9 * len(trips))] * 1000:.2f} ms ({args.calls} calls)"
    )


if __name__ == "__main__":
    main()
