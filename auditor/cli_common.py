"""What every `cxr-auditor` command module shares: the error a user can fix (`CliError`) and the exit
statuses, JSON out, files in, the one-line argument parser, the dispatcher, and the command table.

Each command module has a ``register(sub)`` hook that adds its commands to the top-level subparsers.
`build_parser` imports only the module of the command asked for (all of them for the help, or for a
name it does not know), so `parse-draft` and `serve` start without importing the worklist, evaluation
and report modules. Depends on nothing heavier than pydantic; command modules import this one, and
never each other.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO, TypeVar

from pydantic import BaseModel, ValidationError

from auditor.errors import AuditorError, describe

if TYPE_CHECKING:
    from auditor.config import Settings

M = TypeVar("M", bound=BaseModel)
EXIT_BAD_INPUT: Final = 2
EXIT_DRIFT: Final = 1
EXIT_STUDIES_FAILED: Final = 1
EXIT_MODEL: Final = 3
"""A model backend could not work (weights missing, load failed, engine down): not the input's fault."""
EXIT_INTERRUPTED: Final = 130
_EXIT_CODES: Final = {EXIT_BAD_INPUT: "bad_input", EXIT_MODEL: "model_unavailable"}


class CliError(AuditorError):
    """A problem the user can fix; the message names it, ``exit_status`` is the process's exit status
    (2 for bad input, 3 when a model backend cannot work)."""

    code = "bad_input"

    def __init__(self, message: str, exit_status: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message, _EXIT_CODES.get(exit_status, "bad_input"))
        self.exit_status = exit_status

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.exit_status))


def backend_failure(exc: Exception, what: str = "") -> CliError:
    """A failure of a stage as one CLI line: image problems are bad input (2), model problems exit 3 so
    that scripts can tell them apart. The user's own machine: an unexpected error keeps its text."""
    from auditor.backends import BackendError

    described = describe(exc)
    prefix = f"{what}: " if what else ""
    status = EXIT_MODEL if isinstance(exc, BackendError) else EXIT_BAD_INPUT
    return CliError(prefix + (described.line if isinstance(exc, AuditorError) else str(exc)), status)


def fail(message: str, status: int = EXIT_BAD_INPUT) -> NoReturn:
    print(f"cxr-auditor: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def emit(obj: BaseModel | dict[str, Any], out: TextIO | None = None) -> None:
    text = obj.model_dump_json(indent=2) if isinstance(obj, BaseModel) else json.dumps(obj, indent=2)
    print(text, file=out or sys.stdout)


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file (a BOM is dropped); any failure is a CliError naming the file, and the line
    for text that is not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CliError(f"{path}:{line}: not UTF-8 text") from None


def load_model(path: str, model: type[M], what: str) -> M:
    """A JSON file validated as ``model``; the first problem as one CliError line."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise CliError(
            f"{path}: not a valid {what}: {where}: {first['msg']} ({exc.error_count()} error(s))"
        ) from None


def cli_settings(args: argparse.Namespace, extra: Mapping[str, object] | None = None) -> Settings:
    """The settings the flags ask for (``extra`` overrides them); a bad value is one CliError line."""
    from auditor.cli_flags import settings_from
    from auditor.config import ConfigError

    try:
        return settings_from(args, extra)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


# ---- the parser and the dispatcher ------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """A bad flag is one stderr line naming it (and where help is), not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"cxr-auditor: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _asked_for(argv: Sequence[str] | None) -> str | None:
    """The command named on the line (the first word that is not a flag), if there is a line."""
    return next((word for word in argv if not word.startswith("-")), None) if argv is not None else None


def build_parser(
    commands: Mapping[str, str], argv: Sequence[str] | None = None, **kwargs: Any
) -> argparse.ArgumentParser:
    """The top-level parser. ``commands`` maps each command name to the module whose ``register(sub)``
    adds it; with ``argv``, only the module of the command it names is imported (and every module when
    it names none it knows, so the help and the "invalid choice" line list them all)."""
    import auditor

    parser = OneLineParser(prog="cxr-auditor", **kwargs)
    parser.add_argument("--version", action="version", version=f"cxr-auditor {auditor.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    asked = _asked_for(argv)
    wanted = [commands[asked]] if asked is not None and asked in commands else list(commands.values())
    for module in dict.fromkeys(wanted):  # a module that adds several commands registers once
        importlib.import_module(module).register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch; a CliError becomes one stderr line and its exit status (2 by default).
    No command at all prints the help."""
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        code: int = args.func(args)
    except CliError as exc:
        fail(str(exc), exc.exit_status)
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a disk that cannot be written (or read): one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc} (what was already written is kept)")
    return code
