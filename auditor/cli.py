"""The `cxr-auditor` command. JSON on stdout; one clear line on stderr and a non-zero exit on bad input.

Research and educational QA only: not a medical device and not a diagnosis.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
EXIT_BAD_INPUT = 2
EXIT_DRIFT = 1


class CliError(Exception):
    """Bad input the user can fix; the message names the problem."""


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    print(f"cxr-auditor: error: {message}", file=sys.stderr)
    raise SystemExit(code)


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


def _load_model(path: str, model: type[M], what: str) -> M:
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


# ---- parse-draft --------------------------------------------------------------------------------


def _reader(name: str) -> Callable[[str], BaseModel]:
    from auditor.draft_rules import read_draft

    if name in {"auto", "rules"}:
        return read_draft
    raise CliError(f"--reader {name}: unknown reader (choose rules or auto)")


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


def _batch_item(line_no: int, line: str | None, read: Callable[[str], BaseModel]) -> dict[str, Any]:
    """One output line per input line, always: the reading, or the error that stopped it."""
    from auditor.tool_io import MAX_DRAFT_CHARS

    if line is None:
        return {"id": None, "error": f"line {line_no}: not UTF-8 text"}
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"id": None, "error": f"line {line_no}: invalid JSON ({exc.msg})"}
    if not isinstance(item, dict):
        return {"id": None, "error": f"line {line_no}: expected an object with 'id' and 'text'"}
    ident = item.get("id")
    text = item.get("text")
    if not isinstance(text, str):
        return {"id": ident, "error": f"line {line_no}: 'text' must be a string"}
    if len(text) > MAX_DRAFT_CHARS:
        return {
            "id": ident,
            "error": f"line {line_no}: draft too long ({len(text)} > {MAX_DRAFT_CHARS} characters)",
        }
    try:
        reading = read(text)
    except Exception as exc:  # a reader failure is reported on its line, and the batch goes on
        return {"id": ident, "error": f"line {line_no}: reader failed: {type(exc).__name__}: {exc}"}
    return {"id": ident, **reading.model_dump(mode="json")}


def _write_batch(args: argparse.Namespace, read: Callable[[str], BaseModel]) -> None:
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        for line_no, line in _batch_lines(args.batch):
            print(json.dumps(_batch_item(line_no, line, read)), file=out, flush=False)
    finally:
        if out is not sys.stdout:
            out.close()


def cmd_parse_draft(args: argparse.Namespace) -> int:
    read = _reader(args.reader)
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
    emit(read(text))
    return 0


# ---- compare ------------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from auditor.compare import compare
    from auditor.schema import DraftReading, Grounding, StudyContext

    grounding = _load_model(args.grounding, Grounding, "Grounding")
    reading = _load_model(args.reading, DraftReading, "DraftReading") if args.reading else None
    context = None
    if args.age is not None or args.view is not None:
        try:
            context = StudyContext(age_years=args.age, view=args.view)
        except ValidationError as exc:
            raise CliError(f"study context: {exc.errors()[0]['msg']}") from None
    emit(compare(grounding, reading, context=context))
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


# ---- entry point --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-auditor",
        description="Second-look QA for chest X-ray draft impressions. Research only: not a medical device, "
        "not a diagnosis.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "parse-draft", help="read a draft into the six labels (present/absent/uncertain + spans)"
    )
    p.add_argument("text", nargs="?", help="the draft text")
    p.add_argument("--file", help="read the draft from this file")
    p.add_argument("--batch", help="JSONL of {'id', 'text'} ('-' for stdin); one JSON line out per line in")
    p.add_argument("--out", help="with --batch: write the JSONL here instead of stdout")
    p.add_argument("--reader", default="auto", help="rules | auto (default: auto = rules on this machine)")
    p.set_defaults(func=cmd_parse_draft)

    p = sub.add_parser("compare", help="judge a Grounding against a DraftReading (both JSON files)")
    p.add_argument("--grounding", required=True, help="Grounding JSON (ground_image's output)")
    p.add_argument("--reading", help="DraftReading JSON (parse_draft's output); omit for image-only")
    p.add_argument("--age", type=float, help="patient age in years (a child gets a caution)")
    p.add_argument(
        "--view", choices=["PA", "AP", "lateral"], help="projection (AP gets a heart-size caution)"
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("schema", help="write or check the JSON Schemas in tools_schema/")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the schemas from the contracts")
    mode.add_argument("--check", action="store_true", help="fail if the checked-in schemas drifted")
    p.add_argument("--dir", default="tools_schema", help="schema folder (default: tools_schema)")
    p.set_defaults(func=cmd_schema)

    from auditor import batch
    from auditor.eval import cli as eval_cli

    eval_cli.register(sub)
    batch.register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch; a CliError becomes one stderr line and exit status 2."""
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CliError as exc:
        _fail(str(exc))
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a disk that cannot be written (or read): one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc} (what was already written is kept)")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The library's commands; the installed `cxr-auditor` (mcp_server.cli) adds `serve`."""
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
