"""The worklist: a CSV with a header, or JSONL, of studies (id, image or study_uid, draft, age_years,
view), read and checked into `Study` values. A structural problem (unreadable file, bad header, invalid
JSON line, missing or repeated id) stops the whole worklist with one line naming file:line; a bad field
of one study stays with that study and becomes its error line, so one typo never stops a day's run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from auditor.cli_common import CliError, read_text
from auditor.errors import AuditorError, Failure
from auditor.schema import StudyContext

COLUMNS: Final = ("id", "image", "draft", "age_years", "view", "study_uid")
REQUIRED_COLUMNS: Final = ("id", "image")
"""``study_uid`` (a study in the configured DICOMweb archive) may stand in for ``image``."""
View = Literal["PA", "AP", "lateral"]
VIEWS: Final[dict[str, View]] = {"pa": "PA", "ap": "AP", "lateral": "lateral"}


@dataclass(frozen=True)
class Study:
    """One worklist entry, checked. ``problem`` is a bad field found while reading it: the study then
    becomes an error line instead of stopping the whole worklist."""

    id: str
    line: int
    image: str
    draft: str = ""
    context: StudyContext | None = None
    problem: Failure | None = None
    study_uid: str | None = None

    @property
    def fingerprint(self) -> str:
        """Hash of the study's own inputs (image source, draft, context, problem). A data: URI is its
        own content, so a changed picture changes this hash; a local file's bytes are checked on
        resume instead (see ``auditor.batch.store.resume``)."""
        ctx = self.context.model_dump(mode="json") if self.context else None
        problem = self.problem.code if self.problem else None
        archive = [self.study_uid] if self.study_uid else []
        blob = json.dumps(
            [self.image, self.draft, ctx, problem, *archive], sort_keys=True, ensure_ascii=False
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def input_key(self, backend: str) -> str:
        """The ``input`` of its results line: the study's inputs and the backends that audit it."""
        return hashlib.sha256(f"{self.fingerprint}:{backend}".encode("ascii")).hexdigest()[:16]

    @property
    def local_image(self) -> Path | None:
        """The image as a local file, or None for an http(s) URL or a data: URI."""
        if not self.image or self.image[:8].lower().startswith(("http://", "https://", "data:")):
            return None
        return Path(self.image)


class _BadField(AuditorError):
    """A per-study field that cannot be used; becomes that study's error line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


def _is_jsonl(path: Path, text: str) -> bool:
    """By extension; otherwise JSONL when the first non-blank character opens an object."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return True
    if suffix == ".csv":
        return False
    return text.lstrip().startswith("{")


def _csv_header(path: Path, line: int, row: list[str]) -> list[str]:
    header = [cell.strip().lower() for cell in row]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise CliError(f"{path}:{line}: CSV header repeats column(s) {', '.join(map(repr, dupes))}")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise CliError(
            f"{path}:{line}: CSV header has unknown column(s) {', '.join(map(repr, unknown))} "
            f"(expected {', '.join(COLUMNS)})"
        )
    missing = [
        c for c in REQUIRED_COLUMNS if c not in header and not (c == "image" and "study_uid" in header)
    ]
    if missing:
        raise CliError(
            f"{path}:{line}: CSV header lacks {' and '.join(map(repr, missing))} (it has {', '.join(header)})"
        )
    return header


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    """(line the record starts on, column -> cell) for each non-blank row after the header."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    last = 0
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = _csv_header(path, start, row)
                continue
            if len(row) != len(header):
                raise CliError(f"{path}:{start}: {len(row)} fields, but the header has {len(header)}")
            yield start, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise CliError(f"{path}:{reader.line_num}: bad CSV ({exc})") from None
    if header is None:
        raise CliError(f"{path}: empty worklist (no CSV header; expected {', '.join(COLUMNS)})")


_SURROGATE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(item: object) -> bool:
    """JSON may spell lone surrogates (\\ud800), which no UTF-8 results file or page can hold."""
    try:
        json.dumps(item, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, object) for each non-blank line. Split on newlines only: JSON strings may hold
    U+2028 and friends, which ``str.splitlines`` would cut."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(item, dict):
            raise CliError(f"{path}:{number}: expected a JSON object with 'id' and 'image'")
        if _SURROGATE.search(line) and not _encodable(item):
            raise CliError(
                f"{path}:{number}: a string holds an unpaired surrogate escape (not valid Unicode)"
            )
        unknown = sorted(set(item) - set(COLUMNS))
        if unknown:
            raise CliError(
                f"{path}:{number}: unknown field(s) {', '.join(map(repr, unknown))} "
                f"(expected {', '.join(COLUMNS)})"
            )
        yield number, item


def _study_id(path: Path, line: int, value: object) -> str:
    """Ids name results across reruns, so a study without one stops the worklist (file:line)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CliError(f"{path}:{line}: 'id' must be a string (or an integer), got {type(value).__name__}")
    ident = str(value).strip()
    if not ident:
        raise CliError(f"{path}:{line}: empty 'id'")
    return ident


def _image_source(value: object, folder: Path) -> str:
    """A URL or data: URI as given; a path relative to the worklist's folder made absolute."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _BadField("missing_image", "no image given")
    if not isinstance(value, str):
        raise _BadField("invalid_image", f"'image' must be a string, got {type(value).__name__}")
    text = value.strip()
    if text[:8].lower().startswith(("http://", "https://", "data:")):
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _draft(value: object) -> str:
    from auditor.tool_io import MAX_DRAFT_CHARS

    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadField("invalid_draft", f"'draft' must be text, got {type(value).__name__}")
    if len(value) > MAX_DRAFT_CHARS:
        raise _BadField("draft_too_long", f"draft too long ({len(value)} > {MAX_DRAFT_CHARS} characters)")
    return value


def _age(value: object) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _BadField("invalid_age_years", f"'age_years' must be a number, got {type(value).__name__}")
    try:
        age = float(value)
    except ValueError:
        raise _BadField("invalid_age_years", f"'age_years' is not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(age) or not 0 <= age <= 130:
        raise _BadField("invalid_age_years", f"'age_years' must be between 0 and 130, got {age:g}")
    return age


def _view(value: object) -> View | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    view = VIEWS.get(str(value).strip().lower())
    if view is None:
        raise _BadField("invalid_view", f"unknown view {str(value)[:40]!r} (expected PA, AP or lateral)")
    return view


def _study(path: Path, line: int, record: Mapping[str, object]) -> Study:
    """One record -> a Study; a bad field becomes the study's ``problem``, never a worklist error."""
    ident = _study_id(path, line, record.get("id"))
    image = str(record.get("image") or "")
    try:
        study_uid = _study_uid(record)
        image = "" if study_uid else _image_source(record.get("image"), path.parent)
        draft = _draft(record.get("draft"))
        age, view = _age(record.get("age_years")), _view(record.get("view"))
    except _BadField as bad:
        return Study(ident, line, image, problem=Failure(bad.code, bad.message))
    context = StudyContext(age_years=age, view=view) if age is not None or view is not None else None
    return Study(ident, line, image, draft, context, study_uid=study_uid)


def _study_uid(record: Mapping[str, object]) -> str | None:
    """A study in the configured DICOMweb archive, read instead of an image file; never both."""
    value = record.get("study_uid")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise _BadField("invalid_study_uid", f"'study_uid' must be a string, got {type(value).__name__}")
    image = record.get("image")
    if image is not None and str(image).strip():
        raise _BadField("image_and_study_uid", "give 'image' or 'study_uid', not both")
    return value.strip()


def _check_unique(path: Path, studies: Sequence[Study]) -> None:
    lines: dict[str, list[int]] = {}
    for s in studies:
        lines.setdefault(s.id, []).append(s.line)
    dupes = [(ident, where) for ident, where in lines.items() if len(where) > 1]
    if dupes:
        named = "; ".join(f"{ident!r} (lines {', '.join(map(str, where))})" for ident, where in dupes[:10])
        more = f" and {len(dupes) - 10} more" if len(dupes) > 10 else ""
        raise CliError(f"{path}: duplicate id(s): {named}{more}")


def read_worklist(path: Path) -> list[Study]:
    """Read and check a CSV or JSONL worklist. Structural problems (unreadable file, bad header,
    invalid JSON line, missing id, duplicate ids) raise CliError naming file:line; a bad field of one
    study (age, view, draft, image) stays with that study."""
    text = read_text(path, "worklist")
    records = _jsonl_records(path, text) if _is_jsonl(path, text) else _csv_records(path, text)
    studies = [_study(path, line, record) for line, record in records]
    _check_unique(path, studies)
    return studies
