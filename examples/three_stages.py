#!/usr/bin/env python3
"""A scripted agent: the three stages over MCP, in sequence, untouched, then the judge's flags.

It starts `cxr-auditor serve` as a subprocess and speaks MCP to it over stdio with the official
client, exactly as Claude Desktop would: ground_image -> parse_draft -> compare. Research and
educational QA only: not a medical device, not a diagnosis; a flag asks a person to look again.

Offline, with recorded model outputs (the replay grounder):

    python examples/three_stages.py --image ../shared/data/nih/images/00001369_000.png \
        --draft "Cardiomegaly is present. No pneumothorax." --grounder replay --replay recorded.jsonl

Prints the comparison's mode, then one line per flag (or what was not checked, when the image stage
failed or the draft could not be read), then the code of every note.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _mcp.py lives beside this script
from _mcp import DISCLAIMER, add_common_arguments, call, comparison_lines, image_argument, server_params


async def audit(args: argparse.Namespace) -> list[str]:
    async with Client(server_params(args)) as client:
        grounding = await call(client, "ground_image", {"image": image_argument(args.image)})
        reading = await call(client, "parse_draft", {"draft": args.draft})
        comparison = await call(client, "compare", {"grounding": grounding, "reading": reading})
    return comparison_lines(comparison, grounding, reading)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_common_arguments(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    lines = anyio.run(audit, parse_args(argv))
    print(DISCLAIMER, file=sys.stderr)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
