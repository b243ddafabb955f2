"""`cxr-auditor fetch-models`: download the configured checkpoints into the Hugging Face cache once,
with progress bars, so that no tool call ever has to (a client gives up on a call after about a
minute; the two models are several GB each). A model already on this machine is not fetched again.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from auditor.cli_common import EXIT_MODEL, CliError, cli_settings, emit

CHOICES = ("configured", "grounder", "reader", "all")


def _targets(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """(role, model id, revision) to fetch: by default those the configured backends load in-process."""
    from auditor.backends.factory import resolve_reader_kind

    settings = cli_settings(args)
    grounder = (settings.grounder_model, settings.grounder_revision)
    reader = (settings.reader_model, settings.reader_revision)
    wanted = {
        "configured": [
            *(["grounder"] if settings.grounder == "hf" else []),
            *(["reader"] if resolve_reader_kind(settings) == "hf" else []),
        ],
        "grounder": ["grounder"],
        "reader": ["reader"],
        "all": ["grounder", "reader"],
    }[args.models]
    chosen = {"grounder": grounder, "reader": reader}
    return [(role, *chosen[role]) for role in wanted]


def cmd_fetch_models(args: argparse.Namespace) -> int:
    from auditor.backends import BackendError
    from auditor.backends.availability import download, locate

    targets = _targets(args)
    if not targets:
        print(
            "cxr-auditor: the configured backends load no model in this process (replay, http or the "
            "rule reader); use --models grounder, reader or all to fetch one anyway",
            file=sys.stderr,
        )
    done: dict[str, Any] = {}
    for role, model_id, revision in targets:
        found = locate(model_id, revision)
        if found.ready:
            print(f"cxr-auditor: {role} {model_id}: already here ({found.path})", file=sys.stderr)
            done[role] = {"model_id": model_id, "status": "present", "path": found.path}
            continue
        if not found.hub_id:
            raise CliError(f"{role} {model_id}: {found.problem}; a folder cannot be fetched from the hub")
        print(f"cxr-auditor: {role} {model_id}: downloading into the Hugging Face cache", file=sys.stderr)
        try:
            path = download(model_id, revision)
        except BackendError as exc:
            raise CliError(f"{role} {model_id}: {exc}", EXIT_MODEL) from None
        after = locate(model_id, revision)
        if not after.ready:
            raise CliError(f"{role} {model_id}: downloaded, but {after.problem}", EXIT_MODEL)
        done[role] = {"model_id": model_id, "status": "downloaded", "path": path}
    emit(done)
    return 0


def register(sub: Any) -> None:
    """Add the `fetch-models` command to the top-level subparsers."""
    from auditor.config import DEVICES

    p = sub.add_parser(
        "fetch-models",
        help="download the model weights once (several GB) so that no tool call has to",
        description="Download the checkpoints the configured backends load (MedGemma for the hf grounder, "
        "Nemotron for the hf reader) into the Hugging Face cache, with progress. Gated models need "
        "`hf auth login` (or HF_TOKEN) first. Prints where each one is.",
    )
    p.add_argument(
        "--models",
        choices=CHOICES,
        default="configured",
        help="which: those the configured backends use (default), one of them, or both",
    )
    p.add_argument("--config", help="TOML file with the same keys as the CXR_AUDITOR_* variables")
    p.add_argument("--device", choices=DEVICES, help="decides what the auto reader is (hf on a GPU)")
    p.add_argument("--grounder-model", help="hub id of the image model (default: the configured one)")
    p.add_argument("--grounder-revision", help="hub revision of the image model")
    p.add_argument("--reader-model", help="hub id of the draft reader (default: the configured one)")
    p.add_argument("--reader-revision", help="hub revision of the draft reader")
    p.set_defaults(func=cmd_fetch_models)
