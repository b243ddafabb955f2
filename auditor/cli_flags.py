"""The backend flags shared by every command that builds backends (`serve`, `audit-batch`, `audit`,
`ground`, `parse-draft`, `fetch-models`, the eval runners): one definition, so a flag means the same
thing everywhere, with the same choices and the same names as the settings they set."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Final

from auditor.config import DEVICES, DTYPES, GROUNDERS, READERS, Settings, load_settings

SETTING_FLAGS: Final = (
    "grounder",
    "grounder_model",
    "grounder_url",
    "grounder_revision",
    "replay",
    "box_order",
    "box_scale",
    "reader",
    "reader_model",
    "reader_url",
    "reader_revision",
    "device",
    "dtype",
    "grounder_dtype",
    "reader_dtype",
    "grounder_max_new_tokens",
    "reader_max_new_tokens",
    "reader_reasoning",
    "reader_reasoning_budget",
    "allow_download",
    "image_roots",
    "allow_private_urls",
    "dicomweb_url",
)


def add_grounder_flags(
    p: argparse.ArgumentParser,
    choices: Sequence[str] = GROUNDERS,
    default: str | None = None,
    *,
    required: bool = False,
) -> None:
    """The image model: which backend, which checkpoint or engine, its box format and budget."""
    where = f"default {default}" if default else "env CXR_AUDITOR_GROUNDER; default hf"
    p.add_argument(
        "--grounder", choices=choices, default=default, required=required, help=f"image backend ({where})"
    )
    p.add_argument("--grounder-model", help="hub id or local folder of the image model")
    p.add_argument("--grounder-url", help="base URL of an OpenAI-compatible engine for the image model")
    p.add_argument("--grounder-revision", help="hub revision (branch, tag or commit) of the image model")
    p.add_argument("--replay", help="JSONL of recorded model outputs, for --grounder replay")
    p.add_argument("--box-order", choices=["yxyx", "xyxy"], help="the model's box order (default yxyx)")
    p.add_argument("--box-scale", type=float, help="the model's box scale: 1 (default) or 1000")
    p.add_argument("--grounder-dtype", choices=DTYPES, help="dtype of the image model (default: --dtype)")
    p.add_argument(
        "--grounder-max-new-tokens", type=int, metavar="N", help="most tokens the image model writes (512)"
    )


def add_reader_flags(
    p: argparse.ArgumentParser, choices: Sequence[str] = READERS, default: str | None = None
) -> None:
    """The draft reader: which backend, which checkpoint or engine, and its generation budgets."""
    where = f"default {default}" if default else "env CXR_AUDITOR_READER; default auto: hf on a GPU"
    p.add_argument("--reader", choices=choices, default=default, help=f"draft reader ({where})")
    p.add_argument("--reader-model", help="hub id or local folder of the draft reader")
    p.add_argument("--reader-url", help="base URL of an OpenAI-compatible engine for the draft reader")
    p.add_argument("--reader-revision", help="hub revision (branch, tag or commit) of the draft reader")
    p.add_argument("--reader-dtype", choices=DTYPES, help="dtype of the draft reader (default: --dtype)")
    p.add_argument(
        "--reader-max-new-tokens", type=int, metavar="N", help="most answer tokens the reader writes (512)"
    )
    p.add_argument(
        "--reader-reasoning",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let the reader think before answering (default on)",
    )
    p.add_argument(
        "--reader-reasoning-budget", type=int, metavar="N", help="most tokens of reader thinking (256)"
    )


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Where the models run and how they are fetched: one definition for every command."""
    p.add_argument("--config", help="TOML file with the same keys as the CXR_AUDITOR_* variables")
    p.add_argument("--device", choices=DEVICES, help="where the in-process models run (default auto)")
    p.add_argument("--dtype", choices=DTYPES, help="dtype of both in-process models (default auto)")
    p.add_argument(
        "--allow-download",
        action="store_true",
        default=None,
        help="let a model missing from this machine be downloaded on first use (several GB; "
        "env CXR_AUDITOR_ALLOW_DOWNLOAD); `cxr-auditor fetch-models` does it once instead",
    )


def add_image_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-root", action="append", dest="image_roots", help="only read local images under here"
    )
    p.add_argument("--allow-private-urls", action="store_true", default=None, help="allow loopback/LAN URLs")
    p.add_argument(
        "--dicomweb-url",
        metavar="URL",
        help="base URL of a DICOMweb archive (PACS) to read studies from by study UID "
        "(env CXR_AUDITOR_DICOMWEB_URL; credentials only from the environment or the TOML file)",
    )


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    """Everything a command that audits needs: both models, where they run, and the image guards."""
    add_model_flags(p)
    add_grounder_flags(p)
    add_reader_flags(p)
    add_image_flags(p)


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only when stderr is a terminal)",
    )


def settings_from(args: argparse.Namespace, extra: Mapping[str, object] | None = None) -> Settings:
    """Flags (and ``extra`` overrides) over the environment over the config file; raises ConfigError."""
    overrides: dict[str, object] = {k: getattr(args, k, None) for k in SETTING_FLAGS}
    overrides.update(extra or {})
    return load_settings(overrides, config_file=getattr(args, "config", None))
