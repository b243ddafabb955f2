"""The backend flags shared by every command that builds backends (`serve`, `audit-batch`, the eval
runners): one definition, so a flag means the same thing everywhere."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Final

from auditor.config import Settings, load_settings

SETTING_FLAGS: Final = (
    "grounder",
    "grounder_model",
    "grounder_url",
    "replay",
    "reader",
    "reader_model",
    "reader_url",
    "device",
    "image_roots",
    "allow_private_urls",
)


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with the same keys as the CXR_AUDITOR_* variables")
    p.add_argument("--grounder", help="hf | http | replay (env CXR_AUDITOR_GROUNDER; default hf)")
    p.add_argument("--grounder-model", help="hub id or local folder of the image model")
    p.add_argument("--grounder-url", help="base URL of an OpenAI-compatible engine for the image model")
    p.add_argument("--replay", help="JSONL of recorded model outputs, for --grounder replay")
    p.add_argument("--reader", help="auto | rules | hf | http (env CXR_AUDITOR_READER; default auto)")
    p.add_argument("--reader-model", help="hub id or local folder of the draft reader")
    p.add_argument("--reader-url", help="base URL of an OpenAI-compatible engine for the draft reader")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument(
        "--image-root", action="append", dest="image_roots", help="only read local images under here"
    )
    p.add_argument("--allow-private-urls", action="store_true", default=None, help="allow loopback/LAN URLs")


def settings_from(args: argparse.Namespace, extra: Mapping[str, object] | None = None) -> Settings:
    """Flags (and ``extra`` overrides) over the environment over the config file; raises ConfigError."""
    overrides: dict[str, object] = {k: getattr(args, k, None) for k in SETTING_FLAGS}
    overrides.update(extra or {})
    return load_settings(overrides, config_file=getattr(args, "config", None))
