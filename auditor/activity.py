"""What the auditor is doing, for whoever listens: model loading, generation and fallbacks.

A stdlib logger that does not propagate, so the CLI stays quiet (its results carry the same facts as
notes) and nothing reaches a root handler by accident; the MCP server attaches a handler that relays
each record to the calling client as an MCP log notification (mcp_server/client_log.py). Messages name
a stage, a backend, a model, counts and times: never an image's source or identifiers, the draft's
text, or a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

LOGGER_NAME = "auditor.activity"

log = logging.getLogger(LOGGER_NAME)
log.propagate = False
log.addHandler(logging.NullHandler())
log.setLevel(logging.INFO)

STAGE_NAMES = {"grounder": "image model", "reader": "draft reader"}
"""A backend's role as a person would say it."""


def stage_name(role: str) -> str:
    return STAGE_NAMES.get(role, role)


def counts(tokens: Mapping[str, int]) -> str:
    """``prompt 741, answer 40`` from a result's token counts ('' when no model generated)."""
    return ", ".join(f"{name} {n}" for name, n in tokens.items())
