"""`cxr-auditor audit-batch`: audit a worklist of studies in one run (being built; see issue 7)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add the `audit-batch` command to the top-level subparsers (nothing yet)."""
    return None
