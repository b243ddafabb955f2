"""Seconds until the first clear answer: `cxr-auditor serve` as a desktop client starts it (the README's
client configuration: no CXR_AUDITOR_* variables, no HF_HUB_OFFLINE, the client's minimal environment),
then `ground_image` twice and `audit` once over MCP stdio, each capped at ``--cap`` seconds.

Meant for a machine without the image model's weights: it shows how long a user waits before being
told what to do (and for the next calls). On a machine with the weights it times the load instead.

Run: python bench/first_answer.py [--image ../shared/data/nih/images/00001369_000.png] [--cap 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / ".." / "shared" / "data" / "nih" / "images" / "00001369_000.png"


async def measure(image: Path, cap: float) -> None:
    server = Path(sys.executable).with_name("cxr-auditor")
    params = StdioServerParameters(command=str(server), args=["serve"], env=get_default_environment())
    t0 = time.perf_counter()
    async with Client(params) as client:
        print(f"server up: {time.perf_counter() - t0:.1f} s", flush=True)
        calls = [
            ("ground_image", {"image": str(image.resolve())}),
            ("ground_image", {"image": str(image.resolve())}),
            ("audit", {"image": str(image.resolve()), "draft": "No pneumothorax."}),
        ]
        for tool, arguments in calls:
            started = time.perf_counter()
            with anyio.move_on_after(cap) as scope:
                result = await client.call_tool(tool, arguments)
            if scope.cancelled_caught:
                print(f"{tool}: no answer within {cap:g} s", flush=True)
                return
            text = " ".join(getattr(c, "text", "") for c in result.content)
            print(f"{tool}: {time.perf_counter() - started:.1f} s, error={result.is_error}: {text[:300]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--image", type=Path, default=IMAGE)
    p.add_argument("--cap", type=float, default=200.0, help="seconds to wait for each answer")
    args = p.parse_args()
    anyio.run(measure, args.image, args.cap)


if __name__ == "__main__":
    main()
