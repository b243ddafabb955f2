#!/usr/bin/env python3
"""A scripted agent that edits a stage's output before the judge sees it: why the stages are separate.

The image model marked something the reader has looked at and rejected. Rather than re-run the
models, the agent removes that finding from ground_image's output (and says so in a note), then calls
compare again. compare is pure and cheap, so a person's corrections can be folded in at once and the
remaining flags re-judged. Research and educational QA only: not a medical device, not a diagnosis.

Offline, with recorded model outputs (the replay grounder):

    python examples/edit_before_compare.py --image ../shared/data/nih/images/00001369_000.png \
        --draft "Cardiomegaly is present. No pneumothorax." --reject pneumothorax \
        --grounder replay --replay recorded.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _mcp.py lives beside this script
from _mcp import DISCLAIMER, add_common_arguments, call, comparison_lines, image_argument, server_params


def reject(grounding: dict[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    """The grounding without the rejected findings, with a note so the edit stays visible."""
    kept = [f for f in grounding["findings"] if f["label"] not in labels]
    note = {
        "stage": "image",
        "code": "finding_rejected_by_reader",
        "message": f"Removed by the reader before comparison: {', '.join(labels)}.",
    }
    return {**grounding, "findings": kept, "notes": [*grounding.get("notes", []), note]}


async def audit(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(the comparison as the models saw it, the comparison after the reader's edit), as lines."""
    async with Client(server_params(args)) as client:
        grounding = await call(client, "ground_image", {"image": image_argument(args.image)})
        reading = await call(client, "parse_draft", {"draft": args.draft})
        before = await call(client, "compare", {"grounding": grounding, "reading": reading})
        edited = reject(grounding, args.reject)
        after = await call(client, "compare", {"grounding": edited, "reading": reading})
    return comparison_lines(before, grounding, reading), comparison_lines(after, edited, reading)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_common_arguments(p)
    p.add_argument(
        "--reject",
        action="append",
        required=True,
        metavar="LABEL",
        help="an image finding the reader rejected, e.g. pneumothorax (repeatable)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    before, after = anyio.run(audit, args)
    print(DISCLAIMER, file=sys.stderr)
    print("# flags from the models' outputs, unedited", *before, sep="\n")
    print(f"# flags after the reader rejected: {', '.join(args.reject)}", *after, sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
