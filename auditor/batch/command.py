"""The `audit-batch` command: its flags, its checks before any work, and its exit statuses (0 all
audited, 1 some studies failed, 2 bad input, 3 a model backend cannot work, 130 interrupted). The
top-level parser imports this module only when `audit-batch` (or the help) is asked for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.batch.runner import BatchOptions, run_batch
from auditor.batch.store import RESULTS
from auditor.batch.worklist import read_worklist
from auditor.cli_common import EXIT_INTERRUPTED, EXIT_MODEL, EXIT_STUDIES_FAILED, CliError, cli_settings, emit
from auditor.cli_flags import add_backend_flags, add_progress_flag

if TYPE_CHECKING:
    from auditor.backends import DraftReader, Grounder
    from auditor.config import Settings


def _backends(settings: Settings) -> tuple[Grounder, DraftReader]:
    """Both backends, built (not loaded) before any work: a bad replay file, an unavailable backend
    or an image model missing from this machine stops here with one line; a draft reader missing
    from it is a warning (the rule reader reads instead, and each study's notes say so)."""
    from auditor.backends.availability import state_problems
    from auditor.backends.factory import make_grounder, make_reader

    try:
        grounder = make_grounder(settings)
    except Exception as exc:  # a bad replay file or an unavailable backend: one line, before any work
        raise CliError(f"grounder {settings.grounder!r}: {exc}") from None
    try:
        reader = make_reader(settings)
    except Exception as exc:
        raise CliError(f"reader {settings.reader!r}: {exc}") from None
    for role, problem in state_problems([grounder.state(), reader.state()]):
        if role == "grounder":
            raise CliError(f"model backend (load_failed): {problem}", EXIT_MODEL)
        print(f"cxr-auditor: warning: {problem}", file=sys.stderr)
    return grounder, reader


def cmd_audit_batch(args: argparse.Namespace) -> int:
    studies = read_worklist(Path(args.worklist))
    settings = cli_settings(args)
    grounder, reader = _backends(settings)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    options = BatchOptions(progress=sys.stderr if show else None, source=Path(args.worklist).name)
    out = Path(args.out)
    try:
        summary = run_batch(studies, out, settings, grounder=grounder, reader=reader, options=options)
    except KeyboardInterrupt:
        print(
            f"\ncxr-auditor: interrupted; finished studies are kept in {out / RESULTS}. "
            "Run the same command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    emit(summary)
    if summary["failed"]:
        print(
            f"cxr-auditor: {summary['failed']} of {summary['studies']} studies could not be audited "
            f"(their errors are in {out / RESULTS} and the report)",
            file=sys.stderr,
        )
        return EXIT_STUDIES_FAILED
    return 0


def register(sub: Any) -> None:
    """Add the `audit-batch` command to the top-level subparsers."""
    p = sub.add_parser(
        "audit-batch",
        help="audit a worklist (CSV or JSONL of id, image or study_uid, draft, age_years, view) into DIR",
        description="Audit every study of a worklist through the same pipeline as the audit tool. "
        "Writes DIR/results.jsonl (one line per study, streamed; a rerun resumes), DIR/summary.json "
        "(also printed) and DIR/report.html. Research only: not a medical device, not a diagnosis.",
    )
    p.add_argument(
        "worklist", help="CSV with a header, or JSONL; relative image paths resolve against its folder"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; reused to resume)")
    add_progress_flag(p)
    add_backend_flags(p)
    p.set_defaults(func=cmd_audit_batch)
