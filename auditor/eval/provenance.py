"""Where a number came from: code version and git commit, and a stable hash of a run's configuration.

A metric without its provenance cannot be believed or reproduced, so every run writes these beside its
numbers. The commit is asked of git (``git rev-parse HEAD`` in the source tree) and is "unknown" where
there is no git or no repository; an uncommitted working tree is marked dirty.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import cache
from pathlib import Path

import auditor

_SOURCE_DIR = Path(auditor.__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=_SOURCE_DIR, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@cache
def code_version() -> dict[str, object]:
    """``{"auditor": version, "git_commit": sha or "unknown", "git_dirty": bool or None}``."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "auditor": auditor.__version__,
        "git_commit": commit or "unknown",
        "git_dirty": None if status is None else bool(status),
    }


def environment() -> dict[str, str]:
    import numpy

    return {"python": platform.python_version(), "numpy": numpy.__version__, "platform": platform.platform()}


def config_hash(config: dict[str, object]) -> str:
    """sha256 of the configuration as canonical JSON (sorted keys): equal configs, equal hashes."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_diff(old: dict[str, object], new: dict[str, object], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two configurations."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_diff(a, b, name + "."))
        elif a != b:
            out.append(name)
    return out
