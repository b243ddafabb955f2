"""Chest X-rays from a PACS over DICOMweb: QIDO-RS lists a study's instances (dicomweb-client), WADO-RS
fetches the chosen one as stored (its Part-10 bytes), and the file path's DICOM decoder reads it
(``auditor.images``), so an archive image meets the same limits and the same privacy as a file, and its
sha256 (of the bytes as retrieved) works for replay files and resumed worklists exactly as a file's.

Security: only the configured base URL is contacted, whatever its address (it is the one private
address allowed without ``allow_private_urls``); a reference must lie under it and a redirect off it
is refused. Credentials (a bearer token, or a user name and password) come from the settings, ride in
requests' auth hooks, and never appear in a message, a note or a log line. Privacy: only whitelisted
QIDO attributes are read; the patient name, ID, birth date, accession and institution that archives
return unasked are dropped unread, and the library's own log lines (which quote server text) are
withheld. dicomweb-client and requests are imported on first use (the optional extra ``pacs``).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from auditor.images import ImageError, ImageLimits, LoadedImage, load_image_bytes
from auditor.study_select import (
    FOR_PROCESSING_CLASSES,
    NoFrontalImage,
    StudyImages,
    StudyInstance,
    given_note,
    select_frontal,
    selection_note,
    study_images,
)

if TYPE_CHECKING:
    import requests

    from auditor.config import Settings
    from auditor.pipeline import Auditor, Progress
    from auditor.schema import AuditReport, StudyContext

T = TypeVar("T")

DICOMWEB_ERROR_CODES: Final = frozenset(
    {
        "dicomweb_not_configured",
        "dicomweb_unavailable",
        "dicomweb_invalid_reference",
        "dicomweb_refused",
        "dicomweb_unauthorized",
        "dicomweb_not_found",
        "dicomweb_timeout",
        "dicomweb_unreachable",
        "dicomweb_bad_answer",
        "dicomweb_too_large",
        "no_frontal_image",
    }
)
"""Every ``DicomWebError.code``. Stable API, like ``IMAGE_ERROR_CODES``; messages are for people."""

NEEDS_CLIENT: Final = "reading from a PACS needs dicomweb-client: pip install 'cxr-draft-auditor[pacs]'"
NOT_CONFIGURED: Final = (
    "no DICOMweb archive is configured: set CXR_AUDITOR_DICOMWEB_URL (or --dicomweb-url, or dicomweb_url "
    "in the TOML file) to its base URL, e.g. http://127.0.0.1:8042/dicom-web"
)
CREDENTIALS_HINT: Final = "CXR_AUDITOR_DICOMWEB_TOKEN, or CXR_AUDITOR_DICOMWEB_USERNAME and _PASSWORD"
MAX_INSTANCES: Final = 1000
"""A chest study holds a handful; more than this is not a chest radiograph study."""
WADO_ACCEPT: Final = 'multipart/related; type="application/dicom"; transfer-syntax=*'
"""``transfer-syntax=*``: the instance as stored, not transcoded, so its sha256 is stable."""
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_CODE_STRING = re.compile(r"[A-Z0-9 _]{1,16}")
# QIDO attributes read (everything else in an answer is dropped unread)
_SERIES, _SOP, _SOP_CLASS, _MODALITY = "0020000E", "00080018", "00080016", "00080060"
_VIEW, _ROWS, _COLUMNS, _FRAMES = "00185101", "00280010", "00280011", "00280008"
_FIELDS: Final = (_SERIES, _SOP, _SOP_CLASS, _MODALITY, _VIEW, _ROWS, _COLUMNS, _FRAMES)


class DicomWebError(ImageError):
    """The archive could not give the image. An ImageError, so every surface reports it as one."""


class _Withhold(logging.Filter):
    """dicomweb-client logs server Warning headers and request lines verbatim: not ours to pass on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


for _name in ("dicomweb_client", "dicomweb_client.web", "dicomweb_client.api", "dicomweb_client.protocol"):
    logging.getLogger(_name).addFilter(_Withhold())  # a logger's filter does not cover its children


# ---- references ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A study, or one instance of it, in the configured archive."""

    study_uid: str
    series_uid: str | None = None
    sop_uid: str | None = None


def _uid(text: str) -> str | None:
    text = text.strip()
    return text if len(text) <= 64 and _UID.fullmatch(text) else None


_REFERENCE_HELP: Final = (
    "study_uid must be a DICOM UID (digits and dots, e.g. 1.2.840.113619...) or a full "
    ".../studies/{s}/series/{r}/instances/{i} reference under the configured DICOMweb base URL"
)


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


def parse_reference(text: str, base_url: str) -> Reference:
    """A bare study UID, a path ``studies/{s}[/series/{r}/instances/{i}]``, or a full URL of one under
    ``base_url`` (same scheme, host and port; the path below the base's). Anything else is refused
    before any request: a reference cannot switch host."""
    text = text.strip()
    bare = _uid(text)
    if bare is not None:
        return Reference(bare)
    path = text
    if "://" in text:
        try:
            given, base = urllib.parse.urlsplit(text), urllib.parse.urlsplit(base_url)
            same_origin = _origin(given) == _origin(base)
        except ValueError:  # a malformed port
            same_origin = False
        if not same_origin or given.username or given.password:
            raise DicomWebError(
                "dicomweb_refused",
                "the reference names another server than the configured DICOMweb archive; only "
                f"references under {archive_label(base_url)} are read",
            )
        prefix = base.path.rstrip("/") + "/"
        if given.query or given.fragment or not given.path.startswith(prefix):
            raise DicomWebError("dicomweb_invalid_reference", _REFERENCE_HELP)
        path = given.path[len(prefix) :]
    segments = [urllib.parse.unquote(s) for s in path.strip("/").split("/")]
    keys, values = segments[0::2], [_uid(v) for v in segments[1::2]]
    if keys not in (["studies"], ["studies", "series", "instances"]) or None in values:
        raise DicomWebError("dicomweb_invalid_reference", _REFERENCE_HELP)
    uids = [v for v in values if v is not None]
    if len(uids) == 1:
        return Reference(uids[0])
    return Reference(uids[0], uids[1], uids[2])


def archive_label(url: str) -> str:
    """scheme://host:port only: a base URL's path or query may hold a tenant or a key."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


# ---- the client ---------------------------------------------------------------------------------


class _CappedBody:
    """Wraps a response's raw stream: the body may not pass ``cap`` bytes nor run past ``deadline``.
    Every other attribute is the raw stream's own."""

    def __init__(self, raw: Any, cap: int, deadline: float, source: DicomWebSource) -> None:
        self._raw, self._cap, self._deadline, self._source = raw, cap, deadline, source

    def stream(self, amt: int = 2**16, decode_content: bool | None = None) -> Any:
        total = 0
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            total += len(chunk)
            if total > self._cap:
                raise DicomWebError(
                    "dicomweb_too_large",
                    f"{self._source.label} sent more than the limit of {self._cap:,} bytes",
                )
            if time.monotonic() > self._deadline:
                raise DicomWebError(
                    "dicomweb_timeout",
                    f"{self._source.label}: the answer took longer than {self._source.timeout_s:g} s",
                )
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class DicomWebSource:
    """One configured archive. A requests session per thread (with its auth, caps and redirect
    guard), shared by dicomweb-client's QIDO calls and the WADO-RS retrieval."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        max_bytes: int = ImageLimits().max_bytes,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.label = archive_label(self.base_url)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._credentials = (token, username, password)
        self._local = threading.local()

    def __repr__(self) -> str:  # never the credentials
        return f"DicomWebSource({self.label})"

    @property
    def has_credentials(self) -> bool:
        return any(self._credentials)

    # -- plumbing

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._new_session()
            self._local.session = session
        return session

    def _new_session(self) -> requests.Session:
        try:
            import requests
        except ImportError:
            raise DicomWebError("dicomweb_unavailable", NEEDS_CLIENT) from None
        session = requests.Session()
        session.trust_env = False  # no environment proxy (it would see the token) and no ~/.netrc
        session.max_redirects = 3
        session.auth = _auth(*self._credentials)
        session.hooks["response"].append(self._guard)
        return session

    def _guard(self, resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        """Every response, redirects included, before its body is read: refuse a redirect off the
        base and a body over the cap, and bound the time the body may take."""
        if resp.is_redirect:
            target = urllib.parse.urljoin(resp.url, resp.headers.get("location", ""))
            if not self._under_base(target):
                resp.close()
                raise DicomWebError(
                    "dicomweb_refused", f"{self.label} redirected off the configured base URL; not followed"
                )
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            resp.close()
            raise DicomWebError(
                "dicomweb_too_large",
                f"{self.label} announced {int(declared):,} bytes, over the limit of {self.max_bytes:,}",
            )
        resp.raw = _CappedBody(resp.raw, self.max_bytes, time.monotonic() + self.timeout_s, self)
        return resp

    def _under_base(self, url: str) -> bool:
        given, base = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self.base_url)
        return _origin(given) == _origin(base) and given.path.startswith(base.path.rstrip("/") + "/")

    def _timeouts(self) -> tuple[float, float]:
        return (min(self.timeout_s, 10.0), self.timeout_s)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one exchange; every failure becomes a DicomWebError that names the archive by its
        scheme, host and port and the HTTP status, never a URL, a header or the server's text."""
        import requests

        try:
            return fn()
        except DicomWebError:
            raise
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise self._status_error(what, status) from None
        except requests.exceptions.Timeout:
            raise DicomWebError(
                "dicomweb_timeout", f"{self.label}: no answer within {self.timeout_s:g} s ({what})"
            ) from None
        except requests.exceptions.TooManyRedirects:
            raise DicomWebError("dicomweb_refused", f"{self.label}: too many redirects ({what})") from None
        except requests.exceptions.ConnectionError as exc:
            if "timed out" in str(exc).lower():  # a read timeout while streaming comes as this
                raise DicomWebError(
                    "dicomweb_timeout", f"{self.label}: no answer within {self.timeout_s:g} s ({what})"
                ) from None
            raise DicomWebError(
                "dicomweb_unreachable",
                f"{self.label}: cannot connect to the archive ({what}); is it running?",
            ) from None
        except requests.exceptions.RequestException as exc:
            raise DicomWebError(
                "dicomweb_unreachable", f"{self.label}: {type(exc).__name__} ({what})"
            ) from None
        except ValueError as exc:  # a malformed answer (bad JSON, a multipart without parts)
            raise DicomWebError(
                "dicomweb_bad_answer", f"{self.label}: unusable answer ({what}: {type(exc).__name__})"
            ) from None

    def _status_error(self, what: str, status: int) -> DicomWebError:
        if status in (401, 403):
            hint = "check" if self.has_credentials else "the archive wants credentials: set"
            return DicomWebError(
                "dicomweb_unauthorized",
                f"{self.label} refused the request (HTTP {status}, {what}); {hint} {CREDENTIALS_HINT}",
            )
        if status == 404:
            return DicomWebError("dicomweb_not_found", f"{self.label} has no such {what} (HTTP 404)")
        return DicomWebError("dicomweb_bad_answer", f"{self.label} answered HTTP {status} ({what})")

    # -- QIDO-RS and WADO-RS

    def list_instances(self, study_uid: str) -> list[StudyInstance]:
        """The study's instances (QIDO-RS), with the whitelisted attributes only."""
        try:
            from dicomweb_client import DICOMwebClient
        except ImportError:
            raise DicomWebError("dicomweb_unavailable", NEEDS_CLIENT) from None

        def search() -> list[dict[str, Any]]:
            client = DICOMwebClient(self.base_url, session=self._session(), timeout=self._timeouts())
            client.set_http_retry_params(retry=False)  # a retry's back-off would outlast the timeout
            found: list[dict[str, Any]] = client.search_for_instances(
                study_instance_uid=study_uid, fields=list(_FIELDS), limit=MAX_INSTANCES + 1
            )
            return found

        answer = self._call("study", search)
        if not isinstance(answer, list):
            raise DicomWebError("dicomweb_bad_answer", f"{self.label}: the study search is not a list")
        if len(answer) > MAX_INSTANCES:
            raise DicomWebError(
                "dicomweb_too_large",
                f"the study holds more than {MAX_INSTANCES} instances: not a chest radiograph study; "
                "pass one instance's full reference instead",
            )
        instances = [inst for inst in map(_instance, answer) if inst is not None]
        if not instances:
            raise DicomWebError("dicomweb_not_found", f"{self.label} has no study with this UID")
        return instances

    def retrieve(self, ref: Reference) -> bytes:
        """The instance's Part-10 bytes as stored (WADO-RS), within the byte cap and the timeout."""
        assert ref.series_uid is not None and ref.sop_uid is not None
        url = f"{self.base_url}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_uid}"

        def fetch() -> tuple[str, bytes]:
            headers = {"Accept": WADO_ACCEPT, "Accept-Encoding": "identity"}
            with self._session().get(url, headers=headers, stream=True, timeout=self._timeouts()) as resp:
                resp.raise_for_status()
                body = b"".join(resp.iter_content(1 << 20))
                return resp.headers.get("content-type", ""), body

        content_type, body = self._call("instance", fetch)
        return self._single_part(content_type, body)

    def _single_part(self, content_type: str, body: bytes) -> bytes:
        """The one application/dicom part of a WADO-RS answer (or the body, from a server that sends
        the instance bare)."""
        media, _, params = content_type.partition(";")
        media = media.strip().lower()
        if media == "application/dicom":
            return body
        boundary = _parameter(params, "boundary")
        if media != "multipart/related" or not boundary:
            shown = media[:60] or "none"
            raise DicomWebError("dicomweb_bad_answer", f"{self.label} sent {shown!r}, not a DICOM instance")
        marker = b"--" + boundary.encode("latin-1")
        start = body.find(marker)
        head_end = body.find(b"\r\n\r\n", start) if start >= 0 else -1
        end = body.find(b"\r\n" + marker, head_end) if head_end >= 0 else -1
        if end < 0:
            raise DicomWebError("dicomweb_bad_answer", f"{self.label} sent a malformed multipart answer")
        if not body[end + 2 + len(marker) :].startswith(b"--"):
            raise DicomWebError("dicomweb_bad_answer", f"{self.label} sent several parts for one instance")
        return body[head_end + 4 : end]


def _parameter(params: str, name: str) -> str | None:
    for item in params.split(";"):
        key, _, value = item.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"') or None
    return None


def _auth(token: str | None, username: str | None, password: str | None) -> Any:
    """requests auth for the configured credentials (applied per request, never logged), or None."""
    import requests.auth

    if token:

        class Bearer(requests.auth.AuthBase):
            def __call__(self, r: Any) -> Any:
                r.headers["Authorization"] = f"Bearer {token}"
                return r

            def __repr__(self) -> str:
                return "Bearer(<withheld>)"

        return Bearer()
    if username is not None and password is not None:
        return requests.auth.HTTPBasicAuth(username, password)
    return None


def _value(item: Mapping[str, Any], tag: str) -> Any:
    element = item.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    return values[0] if isinstance(values, list) and values else None


def _code(value: Any) -> str | None:
    """A code string (CS) as the header gives it; anything that is not one is not echoed."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().upper()
    return text if _CODE_STRING.fullmatch(text) else "unrecognised"


def _count(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _instance(item: Any) -> StudyInstance | None:
    """One QIDO result -> the attributes kept; None when its UIDs are unusable."""
    if not isinstance(item, dict):
        return None
    series, sop = _value(item, _SERIES), _value(item, _SOP)
    if not isinstance(series, str) or not isinstance(sop, str) or not (_uid(series) and _uid(sop)):
        return None
    return StudyInstance(
        series_uid=series.strip(),
        sop_instance_uid=sop.strip(),
        modality=_code(_value(item, _MODALITY)),
        view_position=_code(_value(item, _VIEW)),
        rows=_count(_value(item, _ROWS)),
        columns=_count(_value(item, _COLUMNS)),
        frames=_count(_value(item, _FRAMES)),
        for_processing=str(_value(item, _SOP_CLASS) or "").strip() in FOR_PROCESSING_CLASSES,
    )


# ---- what the surfaces call ---------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _source(
    url: str, token: str | None, username: str | None, password: str | None, timeout_s: float
) -> DicomWebSource:
    return DicomWebSource(url, token=token, username=username, password=password, timeout_s=timeout_s)


def source_for(settings: Settings) -> DicomWebSource:
    """The configured archive (one per configuration, so sessions and connections are reused)."""
    if not settings.dicomweb_url:
        raise DicomWebError("dicomweb_not_configured", NOT_CONFIGURED)
    return _source(
        settings.dicomweb_url,
        settings.dicomweb_token,
        settings.dicomweb_username,
        settings.dicomweb_password,
        settings.dicomweb_timeout_s,
    )


@dataclass(frozen=True)
class ArchiveImage:
    """An archive image, decoded, with the instance it came from (and a note saying why that one)."""

    image: LoadedImage
    reference: Reference

    @property
    def record(self) -> dict[str, str]:
        """What a worklist's results line keeps to resume: the instance and its bytes' sha256."""
        assert self.reference.sop_uid is not None and self.reference.series_uid is not None
        return {
            "series_uid": self.reference.series_uid,
            "sop_instance_uid": self.reference.sop_uid,
            "sha256": self.image.info.sha256,
        }


def find_study_images(settings: Settings, reference: str) -> StudyImages:
    """Every instance of the referenced study and what an audit of it would read."""
    source = source_for(settings)
    ref = parse_reference(reference, source.base_url)
    return study_images(ref.study_uid, source.list_instances(ref.study_uid))


def load_study_image(settings: Settings, reference: str, limits: ImageLimits) -> ArchiveImage:
    """The frontal radiograph of a study (or the instance referenced in full), fetched as stored and
    decoded by the DICOM path, with a note naming the instance read, why, and what was not."""
    source = source_for(settings)
    ref = parse_reference(reference, source.base_url)
    if ref.sop_uid is not None:
        note = given_note(ref.sop_uid)
    else:
        try:
            ranked = select_frontal(source.list_instances(ref.study_uid))
        except NoFrontalImage as exc:
            raise DicomWebError("no_frontal_image", str(exc)) from None
        ref = Reference(ref.study_uid, ranked[0].series_uid, ranked[0].sop_instance_uid)
        note = selection_note(ranked)
    data = source.retrieve(ref)
    loaded = load_image_bytes(data, limits, origin="the archive's instance")
    image = LoadedImage(image=loaded.image, info=loaded.info, notes=(note, *loaded.notes))
    return ArchiveImage(image, ref)


def image_or_study(
    engine: Auditor, image: str | None, study_uid: str | None, progress: Progress | None = None
) -> LoadedImage:
    """The image a tool call names: ``image`` (a file, URL, data: URI or base64) or ``study_uid`` (a
    study in the configured archive), exactly one of them."""
    from auditor.tool_io import check_one_image

    check_one_image(image, study_uid)
    if progress is not None:
        progress("loading the image" if image is not None else "fetching the study's image from the archive")
    if image is not None:
        return engine.load_image(image)
    assert study_uid is not None
    return load_study_image(engine.settings, study_uid, engine.image_limits()).image


def audit_archive_study(
    engine: Auditor, study_uid: str, draft: str, context: StudyContext | None
) -> tuple[AuditReport, dict[str, str]]:
    """A worklist study given by ``study_uid``: its report and the instance record that resumes it."""
    fetched = load_study_image(engine.settings, study_uid, engine.image_limits())
    return engine.audit_loaded(fetched.image, draft, context), fetched.record
