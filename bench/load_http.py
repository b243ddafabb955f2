"""Load test: N concurrent MCP clients against `cxr-auditor serve --http` on 127.0.0.1.

Each client runs a bounded number of rounds; a round is parse_draft + compare on a draft unique to
that client and round (so a result mixed between clients is detected), and every --audit-every
rounds an audit with the replay grounder. Reports throughput, p50/p99 latency per operation, errors,
mixed results, and the server's resident memory sampled over the run (growth = last - first after
warm-up). Loopback only.

Run: python bench/load_http.py --clients 10 --rounds 200   (and --clients 50)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / ".." / "shared" / "data" / "nih" / "images" / "00001369_000.png"
CLI = str(Path(sys.executable).parent / "cxr-auditor")
GROUNDING = {
    "findings": [{"label": "pneumothorax", "box": {"x0": 0.55, "y0": 0.1, "x1": 0.9, "y1": 0.45}}],
    "outcome": "clean",
    "model": {"backend": "bench", "model_id": "fixed"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks -> seconds)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    replay = folder / "replay.jsonl"
    sha = hashlib.sha256(IMAGE.read_bytes()).hexdigest()
    raw = '[{"label": "pneumothorax", "box_2d": [0.1, 0.55, 0.45, 0.9]}]'
    replay.write_text(json.dumps({"image_sha256": sha, "raw_output": raw}) + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [CLI, "serve", "--http", "--port", str(port), "--grounder", "replay", "--replay", str(replay)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    for _ in range(200):
        try:
            httpx.get(url, timeout=0.5)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.mixed = 0
        self.calls = 0


async def client_loop(
    url: str, cid: int, rounds: int, audit_every: int, stats: Stats, think: float = 0.0
) -> None:
    async with Client(url) as client:
        # each client's first call fetches and compiles the tool schemas (client side, ~100+ ms):
        # a connection-setup cost, not per-request latency, so it is made before the clock starts
        await client.call_tool("parse_draft", {"draft": "warm-up"})
        for n in range(rounds):
            if think:
                await anyio.sleep(think)
            draft = f"Client {cid} round {n}: small right pleural effusion. No pneumothorax."
            t0 = time.perf_counter()
            r = await client.call_tool("parse_draft", {"draft": draft})
            c = await client.call_tool("compare", {"grounding": GROUNDING, "reading": r.structured_content})
            stats.latency["parse_draft+compare"].append(time.perf_counter() - t0)
            stats.calls += 2
            if r.is_error or c.is_error:
                stats.errors.append(f"client {cid} round {n}: tool error")
            elif (r.structured_content or {}).get("draft") != draft:
                stats.mixed += 1
            if audit_every and n % audit_every == 0:
                t0 = time.perf_counter()
                a = await client.call_tool("audit", {"image": str(IMAGE), "draft": draft})
                stats.latency["audit"].append(time.perf_counter() - t0)
                stats.calls += 1
                if a.is_error:
                    stats.errors.append(f"client {cid} round {n}: audit error")
                elif (a.structured_content or {}).get("reading", {}).get("draft") != draft:
                    stats.mixed += 1


async def drive(
    url: str, clients: int, rounds: int, audit_every: int, pid: int, think: float
) -> tuple[Stats, list[int], float]:
    stats = Stats()
    memory: list[int] = []

    async def sample() -> None:
        while True:
            memory.append(rss_kib(pid))
            await anyio.sleep(0.5)

    import gc

    gc.collect()
    gc.freeze()  # the load generator's own collector pauses would otherwise read as server latency
    warm = Stats()  # one client's round first, unmeasured: first-use imports are not load behaviour
    await client_loop(url, -1, 1, 1, warm)
    t0 = time.perf_counter()
    async with anyio.create_task_group() as outer:
        outer.start_soon(sample)
        async with anyio.create_task_group() as tg:
            for cid in range(clients):
                tg.start_soon(_guard, client_loop(url, cid, rounds, audit_every, stats, think), stats, cid)
        outer.cancel_scope.cancel()
    memory.append(rss_kib(pid))
    return stats, memory, time.perf_counter() - t0


async def _guard(coro: Any, stats: Stats, cid: int) -> None:
    try:
        await coro
    except Exception as exc:  # a client that dies is an error to count, not a crash of the bench
        stats.errors.append(f"client {cid}: {type(exc).__name__}: {exc}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=200, help="rounds per client")
    ap.add_argument("--audit-every", type=int, default=10, help="an audit call every N rounds (0: never)")
    ap.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="pause before each round (0: closed loop, saturating the server)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        import resource

        server_cpu0 = cpu_seconds(proc.pid)
        client_cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        try:
            stats, memory, seconds = anyio.run(
                drive, url, args.clients, args.rounds, args.audit_every, proc.pid, args.think_ms / 1000
            )
            server_cpu = cpu_seconds(proc.pid) - server_cpu0
            ru = resource.getrusage(resource.RUSAGE_SELF)
            client_cpu = ru.ru_utime + ru.ru_stime - client_cpu0.ru_utime - client_cpu0.ru_stime
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    warm = memory[min(2, len(memory) - 1)]
    setup = f"clients={args.clients} rounds={args.rounds} think={args.think_ms:g} ms"
    print(f"{setup} calls={stats.calls} in {seconds:.1f} s")
    print(f"throughput: {stats.calls / seconds:.0f} tool calls/s")
    for op, values in stats.latency.items():
        print(f"{op}: n={len(values)} p50 {pct(values, 0.5):.1f} ms p99 {pct(values, 0.99):.1f} ms")
    print(f"errors: {len(stats.errors)}  mixed results: {stats.mixed}")
    print(
        f"CPU per tool call: server {server_cpu / stats.calls * 1000:.2f} ms, "
        f"load-generating clients {client_cpu / stats.calls * 1000:.2f} ms (both on this machine's cores)"
    )
    for line in stats.errors[:5]:
        print("  ", line)
    quarters = [
        memory[min(len(memory) - 1, int(q * (len(memory) - 1)))] / 1024 for q in (0.25, 0.5, 0.75, 1.0)
    ]
    print("server RSS at 25/50/75/100% of the run: " + ", ".join(f"{m:.0f}" for m in quarters) + " MiB")
    print(
        f"server RSS: start {memory[0] / 1024:.0f} MiB, after warm-up {warm / 1024:.0f} MiB, "
        f"end {memory[-1] / 1024:.0f} MiB, max {max(memory) / 1024:.0f} MiB, "
        f"median {statistics.median(memory) / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
