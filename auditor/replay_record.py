"""`cxr-auditor replay-record`: add an image's recorded model output to a replay file, so the whole
loop runs without weights (`--grounder replay`). The record is keyed by the sha256 of the image file's
bytes, computed here (the one thing people get wrong by hand); the raw text is checked through the
same recovery a replay goes through, and what it yields is printed, so a typo shows at once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from auditor.cli_common import CliError, read_text


def cmd_replay_record(args: argparse.Namespace) -> int:
    from auditor.backends.replay import load_replay_file
    from auditor.recovery import BoxFormat, recover_findings

    out = Path(args.file)
    try:
        records = load_replay_file(out) if out.exists() else {}
    except ValueError as exc:
        raise CliError(str(exc)) from None
    raw = read_text(args.raw_file) if args.raw_file else args.raw
    try:
        sha = hashlib.sha256(Path(args.image).read_bytes()).hexdigest()
    except OSError as exc:
        raise CliError(f"{args.image}: cannot read ({exc.strerror or exc})") from None
    if sha in records and not args.replace:
        raise CliError(f"{out} already has a record for {args.image} (sha256 {sha}); pass --replace")
    lines = [] if not out.exists() else read_text(out).splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("image_sha256") != sha]
    record: dict[str, Any] = {"image_sha256": sha, "raw_output": raw}
    if args.model:
        record["model"] = args.model
    out.write_text("".join(f"{line}\n" for line in [*kept, json.dumps(record)]), encoding="utf-8")
    fmt = BoxFormat(order=args.box_order, scale=args.box_scale)
    recovered = recover_findings(raw, fmt)
    labels = ", ".join(f.label.value for f in recovered.findings) or "none"
    notes = ", ".join(n.code for n in recovered.notes)
    print(
        f"cxr-auditor: recorded {args.image} (sha256 {sha}) in {out}: {recovered.outcome.value}, "
        f"findings: {labels}{f'; notes: {notes}' if notes else ''}",
        file=sys.stderr,
    )
    return 0


def register(sub: Any) -> None:
    """Add the `replay-record` command to the top-level subparsers."""
    p = sub.add_parser(
        "replay-record",
        help="add an image's recorded model output to a replay file (runs without weights)",
        description="Append {image_sha256, raw_output, model} for IMAGE to FILE (created if absent), "
        "then serve or audit with --grounder replay --replay FILE.",
    )
    p.add_argument("file", metavar="FILE", help="the replay file (JSONL)")
    p.add_argument("--image", required=True, help="the image file the output was generated for")
    raw = p.add_mutually_exclusive_group(required=True)
    raw.add_argument("--raw", help="the model's raw output text, exactly as generated")
    raw.add_argument("--raw-file", help="read the raw output from this file")
    p.add_argument("--model", help="which model wrote it (shown in every result)")
    p.add_argument("--replace", action="store_true", help="replace an existing record for the image")
    p.add_argument("--box-order", choices=["yxyx", "xyxy"], default="yxyx", help="to check the output")
    p.add_argument("--box-scale", type=float, default=1.0, help="to check the output (1 or 1000)")
    p.set_defaults(func=cmd_replay_record)
