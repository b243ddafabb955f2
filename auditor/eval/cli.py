"""`cxr-auditor eval ...`: the evaluation runners' command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_eval_reader(args: argparse.Namespace) -> int:
    from auditor.cli import CliError, emit
    from auditor.eval.reader_eval import evaluate_reader, write_run

    kind, _, path = args.dataset.partition(":")
    if kind != "openi" or not path:
        raise CliError(f"--dataset {args.dataset}: expected openi:PATH")
    if not Path(path).is_file():
        raise CliError(f"{path}: no such file")
    try:
        result = evaluate_reader(path, reader=args.reader)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.out:
        write_run(result, Path(args.out))
    emit(result)
    return 0


def register(sub: Any) -> None:
    """Add the `eval` command and its runners to the top-level subparsers."""
    p = sub.add_parser("eval", help="evaluation runners")
    ev = p.add_subparsers(dest="eval_command", required=True, metavar="RUNNER")
    r = ev.add_parser("reader", help="score a draft reader on an Open-i style report CSV")
    r.add_argument("--dataset", required=True, help="openi:PATH")
    r.add_argument("--reader", default="rules", help="rules (default)")
    r.add_argument("--out", help="write DIR/metrics.json and DIR/report.md")
    r.set_defaults(func=cmd_eval_reader)
