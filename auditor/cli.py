"""The `cxr-auditor` command. JSON on stdout; one clear line on stderr and a non-zero exit on bad input.

Research and educational QA only: not a medical device and not a diagnosis.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ValidationError

from auditor.cli_common import (
    EXIT_DRIFT,
    CliError,
    backend_failure,
    cli_settings,
    emit,
    load_model,
    read_text,
    run,
)
from auditor.cli_common import build_parser as _build_parser

if TYPE_CHECKING:
    from auditor.pipeline import Auditor
    from auditor.schema import StudyContext

COMMANDS: Final = {
    "audit": "auditor.cli",
    "ground": "auditor.cli",
    "parse-draft": "auditor.cli",
    "compare": "auditor.cli",
    "fetch-models": "auditor.fetch_models",
    "replay-record": "auditor.replay_record",
    "schema": "auditor.cli",
    "eval": "auditor.eval.cli",
    "audit-batch": "auditor.batch.command",
    "train": "auditor.train.cli",
}
"""Every command and the module whose ``register(sub)`` adds it (see ``cli_common.build_parser``)."""


# ---- parse-draft --------------------------------------------------------------------------------


def _reader(args: argparse.Namespace) -> Callable[[str], BaseModel]:
    """The reader ``--reader`` names (any kind: rules, auto, hf, http), built from the same settings
    as `serve`; its own result, never a silent fallback to the rule reader."""
    from auditor.backends import BackendError
    from auditor.backends.factory import make_reader, resolve_reader_kind
    from auditor.draft_rules import read_draft

    settings = cli_settings(args)
    kind = resolve_reader_kind(settings)
    if kind == "rules":
        return read_draft
    try:
        return make_reader(settings, kind).read
    except BackendError as exc:
        raise backend_failure(exc, f"--reader {kind}") from None


def _batch_lines(path: str) -> Iterator[tuple[int, str | None]]:
    """Numbered lines; a line that is not UTF-8 comes back as None (its own error line, not the end)."""
    try:
        fh = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    with contextlib.nullcontext(fh) if path == "-" else fh:
        for number, raw in enumerate(fh, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None


def _batch_item(
    line_no: int, line: str | None, read: Callable[[str], BaseModel], max_chars: int
) -> tuple[Any, BaseModel | str]:
    """One result per input line, always: its id with the reading, or with the error that stopped it."""
    if line is None:
        return None, f"line {line_no}: not UTF-8 text"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"line {line_no}: invalid JSON ({exc.msg})"
    if not isinstance(item, dict):
        return None, f"line {line_no}: expected an object with 'id' and 'text'"
    ident = item.get("id")
    text = item.get("text")
    if not isinstance(text, str):
        return ident, f"line {line_no}: 'text' must be a string"
    if len(text) > max_chars:
        return ident, f"line {line_no}: draft too long ({len(text)} > {max_chars} characters)"
    try:
        return ident, read(text)
    except Exception as exc:  # a reader failure is reported on its line, and the batch goes on
        return ident, f"line {line_no}: reader failed: {type(exc).__name__}: {exc}"


def _batch_json(ident: Any, result: BaseModel | str) -> bytes:
    """One UTF-8 JSON line: {"id": ..., **reading} or {"id": ..., "error": ...}. The reading is serialised
    by pydantic's compiled serialiser and put behind its id (3x faster than model_dump + json.dumps);
    text it cannot encode (a lone surrogate from a "\\ud800" escape) goes the escaping way."""
    if isinstance(result, str):
        return json.dumps({"id": ident, "error": result}).encode() + b"\n"
    try:
        return b'{"id": ' + json.dumps(ident).encode() + b", " + result.model_dump_json().encode()[1:] + b"\n"
    except ValueError:  # PydanticSerializationError and UnicodeEncodeError are ValueErrors
        return json.dumps({"id": ident, **result.model_dump(mode="json")}).encode() + b"\n"


def _write_batch(args: argparse.Namespace, read: Callable[[str], BaseModel]) -> None:
    """JSON lines are UTF-8 bytes (RFC 8259) whatever the locale: stdout's byte stream where it has one."""
    from auditor.tool_io import MAX_DRAFT_CHARS

    sys.stdout.flush()
    out = open(args.out, "wb") if args.out else getattr(sys.stdout, "buffer", None)  # noqa: SIM115
    try:
        for line_no, line in _batch_lines(args.batch):
            data = _batch_json(*_batch_item(line_no, line, read, MAX_DRAFT_CHARS))
            if out is None:  # a text-only stdout (an embedding host): decoding UTF-8 we made cannot fail
                sys.stdout.write(data.decode())
            else:
                out.write(data)
    finally:
        if args.out and out is not None:
            out.close()
        elif out is not None:
            out.flush()


def cmd_parse_draft(args: argparse.Namespace) -> int:
    read = _reader(args)
    if args.batch:
        try:
            _write_batch(args, read)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            where = args.out or "stdout"
            raise CliError(
                f"{where}: cannot write ({exc.strerror or exc}); the lines before it are kept"
            ) from None
        return 0
    if args.file:
        text = read_text(args.file)
    elif args.text is not None:
        text = args.text
    else:
        raise CliError("give the draft as TEXT, --file F or --batch IN.jsonl")
    from auditor.tool_io import MAX_DRAFT_CHARS

    if len(text) > MAX_DRAFT_CHARS:
        raise CliError(f"draft too long ({len(text)} > {MAX_DRAFT_CHARS} characters)")
    try:
        reading = read(text)
    except Exception as exc:  # a model reader that cannot load or run: one line, exit 3
        raise backend_failure(exc, "parse-draft") from None
    emit(reading)
    return 0


# ---- ground and audit: one study --------------------------------------------------------------------


def _engine(args: argparse.Namespace) -> tuple[Auditor, Callable[[str], None]]:
    """An Auditor on the flags' settings and a progress printer (stderr; a terminal by default)."""
    from auditor.pipeline import Auditor

    engine = Auditor(cli_settings(args))
    show = sys.stderr.isatty() if args.progress is None else args.progress

    def progress(message: str) -> None:
        if show:
            print(f"cxr-auditor: {message}", file=sys.stderr, flush=True)

    return engine, progress


def cmd_ground(args: argparse.Namespace) -> int:
    engine, progress = _engine(args)
    try:
        grounding = engine.ground(args.image, progress)
    except Exception as exc:
        raise backend_failure(exc, "ground") from None
    emit(grounding)
    return 0


def _context(age: float | None, view: str | None) -> StudyContext | None:
    from auditor.schema import StudyContext

    if age is None and view is None:
        return None
    try:
        return StudyContext(age_years=age, view=view)
    except ValidationError as exc:
        raise CliError(f"study context: {exc.errors()[0]['msg']}") from None


def cmd_audit(args: argparse.Namespace) -> int:
    from auditor.tool_io import MAX_DRAFT_CHARS

    draft = read_text(args.draft_file) if args.draft_file else args.draft or ""
    if len(draft) > MAX_DRAFT_CHARS:
        raise CliError(f"draft too long ({len(draft)} > {MAX_DRAFT_CHARS} characters)")
    context = _context(args.age_years, args.view)
    engine, progress = _engine(args)
    try:
        report = engine.audit(args.image, draft, context, progress)
    except Exception as exc:
        raise backend_failure(exc, "audit") from None
    emit(report)
    return 0


# ---- compare ------------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from auditor.compare import compare
    from auditor.schema import DraftReading, Grounding

    grounding = load_model(args.grounding, Grounding, "Grounding")
    reading = load_model(args.reading, DraftReading, "DraftReading") if args.reading else None
    emit(compare(grounding, reading, context=_context(args.age_years, args.view)))
    return 0


# ---- schema -------------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    from auditor.tool_io import tool_schemas

    folder = Path(args.dir)
    expected = {
        name: json.dumps(schema, indent=2, sort_keys=True) + "\n" for name, schema in tool_schemas().items()
    }
    if args.write:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in expected.items():
            (folder / name).write_text(text, encoding="utf-8")
        print(f"wrote {len(expected)} schemas to {folder}", file=sys.stderr)
        return 0
    drift = []
    for name, text in expected.items():
        path = folder / name
        if not path.exists():
            drift.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            drift.append(f"{path}: differs from the contracts")
    extra = sorted(p.name for p in folder.glob("*.json") if p.name not in expected) if folder.is_dir() else []
    drift.extend(f"{folder / name}: not generated by the contracts" for name in extra)
    if drift:
        for line in drift:
            print(f"cxr-auditor: schema drift: {line}", file=sys.stderr)
        print("cxr-auditor: run `cxr-auditor schema --write` and commit the result", file=sys.stderr)
        return EXIT_DRIFT
    print(f"{len(expected)} schemas in {folder} match the contracts", file=sys.stderr)
    return 0


# ---- registration and entry point ----------------------------------------------------------------

DESCRIPTION: Final = (
    "Second-look QA for chest X-ray draft impressions. Research only: not a medical device, not a diagnosis."
)


def register(sub: Any) -> None:
    """Add the one-study commands (audit, ground, parse-draft, compare) and `schema`."""
    from auditor import cli_flags as flags

    p = sub.add_parser("audit", help="audit one image and its draft: all three stages, AuditReport JSON")
    p.add_argument("image", help="the chest X-ray: a file, an http(s) URL or a data: URI")
    draft = p.add_mutually_exclusive_group()
    draft.add_argument("--draft", help="the draft impression, verbatim (omit for an image-only pass)")
    draft.add_argument("--draft-file", help="read the draft from this file")
    _context_flags(p)
    flags.add_backend_flags(p)
    flags.add_progress_flag(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("ground", help="find the labels with boxes on one image (Grounding JSON)")
    p.add_argument("image", help="the chest X-ray: a file, an http(s) URL or a data: URI")
    flags.add_model_flags(p)
    flags.add_grounder_flags(p)
    flags.add_image_flags(p)
    flags.add_progress_flag(p)
    p.set_defaults(func=cmd_ground)

    p = sub.add_parser(
        "parse-draft", help="read a draft into the six labels (present/absent/uncertain + spans)"
    )
    p.add_argument("text", nargs="?", help="the draft text")
    p.add_argument("--file", help="read the draft from this file")
    p.add_argument("--batch", help="JSONL of {'id', 'text'} ('-' for stdin); one JSON line out per line in")
    p.add_argument("--out", help="with --batch: write the JSONL here instead of stdout")
    flags.add_model_flags(p)
    flags.add_reader_flags(p)
    p.set_defaults(func=cmd_parse_draft)

    p = sub.add_parser("compare", help="judge a Grounding against a DraftReading (both JSON files)")
    p.add_argument("--grounding", required=True, help="Grounding JSON (ground_image's output)")
    p.add_argument("--reading", help="DraftReading JSON (parse_draft's output); omit for image-only")
    _context_flags(p)
    p.set_defaults(func=cmd_compare)

    # a developer's command: it works as always, but stays out of the main help listing
    p = sub.add_parser("schema", description="write or check the JSON Schemas in tools_schema/")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the schemas from the contracts")
    mode.add_argument("--check", action="store_true", help="fail if the checked-in schemas drifted")
    p.add_argument("--dir", default="tools_schema", help="schema folder (default: tools_schema)")
    p.set_defaults(func=cmd_schema)


def build_parser(
    argv: Sequence[str] | None = None, more: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """The library's commands (and ``more``: command name -> module with a ``register(sub)``, as
    mcp_server.cli adds `serve`); with ``argv``, only the named command's module is imported."""
    return _build_parser({**COMMANDS, **(more or {})}, argv, description=DESCRIPTION)


def _context_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--age-years", "--age", type=float, dest="age_years", help="patient age (a child gets a caution)"
    )
    p.add_argument(
        "--view", type=_view, metavar="{PA,AP,lateral}", help="projection (AP gets a heart-size caution)"
    )


def _view(text: str) -> str:
    """PA, AP or lateral, however it is capitalised (people type `ap`)."""
    views = {"pa": "PA", "ap": "AP", "lateral": "lateral"}
    if text.strip().lower() not in views:
        raise argparse.ArgumentTypeError(f"unknown view {text!r} (choose PA, AP or lateral)")
    return views[text.strip().lower()]


def main(argv: Sequence[str] | None = None) -> int:
    """The library's commands; the installed `cxr-auditor` (mcp_server.cli) adds `serve`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(build_parser(argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
