"""Image input for the image stage: PNG/JPEG/DICOM from a path, an http(s) URL, a data: URI or base64.

Everything here treats its input as hostile: sizes are checked before pixels are decoded, URLs are
refused when they point at link-local, metadata or (by default) private addresses, and local paths can
be confined to a set of roots. DICOM header values never leave the decoder (no PHI in errors, notes,
ImageInfo or logs). Pillow, numpy, httpx and pydicom are imported on first use, so importing this
module is cheap; torch is never imported.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import io
import ipaddress
import logging
import os
import re
import socket
import stat
import threading
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.errors import AuditorError
from auditor.schema import ImageInfo, Note, View

if TYPE_CHECKING:
    import httpx
    import numpy as np
    import numpy.typing as npt
    from PIL import Image
    from pydicom.dataset import Dataset

__all__ = [
    "IMAGE_ERROR_CODES",
    "ImageError",
    "ImageLimits",
    "LoadedImage",
    "load_image",
    "load_image_bytes",
    "sniff_format",
]

IMAGE_ERROR_CODES = frozenset(
    {
        "not_found",
        "not_a_file",
        "not_readable",
        "path_refused",
        "too_large",
        "not_an_image",
        "url_refused",
        "url_timeout",
        "url_unreachable",
        "dicom_unavailable",
        "dicom_invalid",
        "dicom_no_pixels",
        "dicom_multiframe",
        "dicom_unsupported",
        "dicom_codec_missing",
        "dicom_decode_failed",
    }
)
"""Every ``ImageError.code`` this module raises. Codes are stable API; messages are for people."""

DICOM_NEEDS_PYDICOM = "DICOM support needs pydicom: pip install 'cxr-draft-auditor[dicom]'"

# Pillow plugins we let near untrusted bytes. An allow-list keeps out plugins that shell out
# (EPS runs Ghostscript) or that nobody sends a chest X-ray in.
_PIL_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "JPEG2000")
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_EXIF_ORIENTATION = 0x0112
_B64_CHARS = re.compile(r"[A-Za-z0-9+/\s]+={0,2}\s*")
_B64_MIN_CHARS = 16
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_URL_MEDIA = ("application/dicom", "application/octet-stream")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
_DICOM_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_DICOM_KNOWN_PHOTOMETRIC = _MONOCHROME | _DICOM_COLOUR | {"PALETTE COLOR", "YBR_PARTIAL_420", "XYB"}
# ViewPosition (0018,5101) -> the view the judge needs: only a lateral film changes what x means;
# other values (obliques, decubitus, blank) stay unknown.
_DICOM_VIEWS: dict[str, View] = {
    "PA": "PA",
    "AP": "AP",
    "LL": "lateral",
    "RL": "lateral",
    "LATERAL": "lateral",
}
# warnings.catch_warnings swaps process-wide state; two threads interleaving it can leave a filter
# (or a recording hook) installed for good. Our own regions take turns under this lock.
_WARNINGS_LOCK = threading.Lock()
# Set (to a counter) while this thread decodes DICOM: pydicom's log records are withheld meanwhile.
_WITHHELD_LOGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("withheld", default=None)


class ImageError(AuditorError, ValueError):
    """An image that cannot be used. ``code`` is stable snake_case; the message says what was wrong."""

    surface = "image"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)

    def as_note(self) -> Note:
        """The failure as a Note, for results that degrade instead of raising."""
        return Note(stage="image", code=self.code, message=self.message)


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on untrusted input. The defaults suit a server; tests loosen ``allow_private_urls``."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 8192
    url_timeout_s: float = 10.0
    max_redirects: int = 3
    allow_private_urls: bool = False
    roots: tuple[Path, ...] | None = None


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image ready for a model: 8-bit L or RGB, display orientation, with its provenance."""

    image: Image.Image
    info: ImageInfo
    notes: tuple[Note, ...] = ()

    def rgb(self) -> Image.Image:
        """A fresh RGB copy, which is what VLM processors expect (and may mutate)."""
        return self.image.convert("RGB")


# --------------------------------------------------------------------------------------- public API


def load_image(source: str | os.PathLike[str], limits: ImageLimits = ImageLimits()) -> LoadedImage:
    """Load from a path, an http(s) URL, a ``data:`` URI or raw base64, enforcing ``limits``."""
    if isinstance(source, os.PathLike):
        return _load_path(Path(source), limits, looked_like_base64=False)
    text = source.strip()
    if not text:
        raise ImageError("not_found", "empty image source")
    lowered = text[:16].lower()
    if lowered.startswith(("http://", "https://")):
        data, origin = _fetch_url(text, limits)
        return load_image_bytes(data, limits, origin=origin)
    if lowered.startswith("data:"):
        return load_image_bytes(_decode_data_uri(text, limits), limits, origin="data: URI")
    if lowered.startswith("file:"):  # a local path spelled as a URI: the same file, the same guards
        return _load_path(_file_uri_path(text), limits, looked_like_base64=False)
    _refuse_other_schemes(text)
    decoded = _try_base64(text, limits)
    if decoded is not None and sniff_format(decoded) is not None:
        return load_image_bytes(decoded, limits, origin="base64")
    return _load_path(Path(text), limits, looked_like_base64=decoded is not None)


def load_image_bytes(
    data: bytes, limits: ImageLimits = ImageLimits(), *, origin: str = "bytes"
) -> LoadedImage:
    """Decode source bytes. ``origin`` only labels error messages (never put PHI in it)."""
    if len(data) > limits.max_bytes:
        raise ImageError(
            "too_large", f"{origin}: {len(data):,} bytes is over the limit of {limits.max_bytes:,}"
        )
    if not data:
        raise ImageError("not_an_image", f"{origin}: no bytes")
    kind = sniff_format(data)
    view: View | None = None
    if kind == "DICOM":
        image, notes, view = _decode_dicom(data, limits)
        fmt = "DICOM"
    else:
        image, fmt, notes = _decode_pil(data, limits, origin)
    info = ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        width=image.width,
        height=image.height,
        source_format=fmt,
        view=view,
    )
    return LoadedImage(image=image, info=info, notes=tuple(notes))


def sniff_format(data: bytes) -> str | None:
    """The container named by the magic bytes, or None. Cheap; decides DICOM vs Pillow and base64."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[128:132] == b"DICM":
        return "DICOM"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG2000"
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00" and len(data) >= 26:
        return "BMP"
    return None


# ------------------------------------------------------------------------------ source resolution


def _file_uri_path(uri: str) -> Path:
    """``file:///abs/path`` (or ``file://localhost/...``, ``file:/abs/path``) as the local path it names."""
    from urllib.parse import unquote, urlsplit
    from urllib.request import url2pathname

    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ImageError("url_refused", f"a file: URI must name this machine, not host {parts.netloc!r}")
    return Path(url2pathname(unquote(parts.path)))


def _refuse_other_schemes(text: str) -> None:
    """ftp:, gopher: and friends are refused outright: only http(s) and data: are fetched, and a file:
    URI is read as the local path it names."""
    match = _SCHEME.match(text)
    if match is None:
        return
    scheme = match.group(1).lower()
    if len(scheme) > 1 and (text[match.end() :].startswith("//") or scheme in {"file", "ftp", "gopher"}):
        raise ImageError("url_refused", f"URL scheme {scheme!r} is not allowed (only http, https and data)")


def _try_base64(text: str, limits: ImageLimits) -> bytes | None:
    """Strictly decoded base64, or None when the text cannot be base64 (so it is a path)."""
    if len(text) < _B64_MIN_CHARS or _B64_CHARS.fullmatch(text) is None:
        return None
    compact = "".join(text.split())
    if len(compact) % 4:
        return None
    if len(compact) // 4 * 3 > limits.max_bytes + 2:
        raise ImageError(
            "too_large", f"base64 data decodes to more than the limit of {limits.max_bytes:,} bytes"
        )
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error:
        return None


def _decode_data_uri(uri: str, limits: ImageLimits) -> bytes:
    """RFC 2397 ``data:[<mediatype>][;base64],<data>``; the media type is ignored, the bytes are sniffed."""
    header, comma, payload = uri.partition(",")
    if not comma:
        raise ImageError("not_an_image", "malformed data: URI (no comma before the data)")
    params = [p.strip().lower() for p in header[5:].split(";")]
    if "base64" not in params[1:]:
        data = urllib.parse.unquote_to_bytes(payload)
        if len(data) > limits.max_bytes:
            raise ImageError(
                "too_large", f"data: URI holds more than the limit of {limits.max_bytes:,} bytes"
            )
        return data
    compact = "".join(payload.split())
    if len(compact) // 4 * 3 > limits.max_bytes + 2:
        raise ImageError(
            "too_large", f"data: URI decodes to more than the limit of {limits.max_bytes:,} bytes"
        )
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise ImageError("not_an_image", f"data: URI payload is not valid base64 ({exc})") from None


def _load_path(path: Path, limits: ImageLimits, *, looked_like_base64: bool) -> LoadedImage:
    """Read a local file, inside ``limits.roots`` when set; the root check comes first so that a
    refused path never reveals whether it exists."""
    path = path.expanduser()
    try:
        target = _confined(path, limits.roots) if limits.roots is not None else path
        st = target.stat()
    except (ImageError, FileNotFoundError) as exc:
        if looked_like_base64:  # valid base64 text that is neither an image nor a usable file
            raise ImageError("not_an_image", "the text decodes as base64, but not to an image") from None
        if isinstance(exc, ImageError):
            raise
        raise ImageError("not_found", f"no such file: {path}{_relative_to(path)}") from None
    except OSError as exc:
        raise ImageError("not_readable", f"cannot stat {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("not_a_file", f"not a regular file: {path}")
    data = _read_capped(target, path, limits.max_bytes)
    return load_image_bytes(data, limits, origin=str(path))


def _relative_to(path: Path) -> str:
    """For a relative path, what it was read relative to: a server's working folder is rarely the
    folder the person had in mind."""
    if path.is_absolute():
        return ""
    return f" (a relative path, read from the working folder {Path.cwd()}; give an absolute path)"


def _confined(path: Path, roots: tuple[Path, ...]) -> Path:
    """The resolved path (symlinks followed) if it lies inside a root, else path_refused."""
    resolved = path.resolve()
    for root in roots:
        if resolved.is_relative_to(root.expanduser().resolve()):
            return resolved
    raise ImageError("path_refused", f"{path} is outside the allowed image folders")


def _read_capped(target: Path, shown: Path, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` (checked on the opened file, so a swap after stat cannot enlarge it)."""
    try:
        with open(target, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ImageError("not_a_file", f"not a regular file: {shown}")
            if st.st_size > max_bytes:
                raise ImageError(
                    "too_large", f"{shown}: {st.st_size:,} bytes is over the limit of {max_bytes:,}"
                )
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError("not_readable", f"cannot read {shown}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ImageError("too_large", f"{shown}: more than the limit of {max_bytes:,} bytes")
    return data


# ---------------------------------------------------------------------------------------- URLs


def _fetch_url(url: str, limits: ImageLimits) -> tuple[bytes, str]:
    """GET with a byte cap, a deadline and redirects followed by hand so every hop is checked.
    Returns the body and a label (scheme://host:port only: paths and queries may hold tokens or PHI)."""
    import httpx

    deadline = time.monotonic() + limits.url_timeout_s
    headers = {
        "Accept": "image/*, application/dicom, application/octet-stream;q=0.5",
        "Accept-Encoding": "identity",
        "User-Agent": "cxr-draft-auditor",
    }
    with httpx.Client(
        transport=_guarded_transport(limits),
        timeout=httpx.Timeout(limits.url_timeout_s),
        follow_redirects=False,
        trust_env=False,  # an env proxy would bypass the address checks
        headers=headers,
    ) as client:
        for _ in range(limits.max_redirects + 1):
            if time.monotonic() > deadline:
                raise ImageError("url_timeout", f"redirects took longer than {limits.url_timeout_s:g} s")
            target = _checked_url(url, limits)
            label = _url_label(target)
            nxt, body = _one_hop(client, target, label, limits, deadline)
            if body is not None:
                return body, label
            url = nxt
    raise ImageError("url_refused", f"{label}: too many redirects (more than {limits.max_redirects})")


def _one_hop(
    client: httpx.Client, target: httpx.URL, label: str, limits: ImageLimits, deadline: float
) -> tuple[str, bytes | None]:
    """One request: either the next URL to visit or the body. httpx errors become ImageErrors."""
    import httpx

    try:
        with client.stream("GET", target) as resp:
            location = resp.headers.get("location")
            if resp.status_code in _REDIRECTS and location:
                return str(resp.url.join(location)), None
            _check_response(resp, label)
            return "", _read_body(resp, label, limits, deadline)
    except httpx.TimeoutException:
        raise ImageError("url_timeout", f"{label}: no answer within {limits.url_timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise ImageError("url_unreachable", f"{label}: {type(exc).__name__}: {exc}") from None


def _checked_url(url: str, limits: ImageLimits) -> httpx.URL:
    """Parse, allow only http(s), and refuse hosts that resolve to a forbidden address."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ImageError("url_refused", f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise ImageError("url_refused", f"URL scheme {parsed.scheme!r} is not allowed (only http and https)")
    if not parsed.host:
        raise ImageError("url_refused", "URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    _resolve_allowed(parsed.host, port, limits)
    return parsed


def _url_label(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}" + (f":{url.port}" if url.port else "")


def _resolve_allowed(host: str, port: int, limits: ImageLimits) -> list[str]:
    """Every address the host resolves to, or url_refused if ANY of them is forbidden."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageError("url_unreachable", f"cannot resolve host {host!r}: {exc}") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        reason = _forbidden_reason(ipaddress.ip_address(address), limits.allow_private_urls)
        if reason:
            raise ImageError("url_refused", f"host {host!r} resolves to {address}, {reason}")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ImageError("url_unreachable", f"host {host!r} resolves to no address")
    return addresses


_PRIVATE_HINT = (
    "not allowed unless allow_private_urls is set: --allow-private-urls or CXR_AUDITOR_ALLOW_PRIVATE_URLS=1"
)


def _forbidden_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str | None:
    """Why fetching from ``ip`` is refused (SSRF guard), or None when it is allowed."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            return _forbidden_reason(embedded, allow_private)
    checks = (
        (ip in _METADATA_IPS, "a cloud metadata address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "an unspecified address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    if ip.is_loopback:  # before is_reserved, which ::1 also is
        return None if allow_private else f"a loopback address ({_PRIVATE_HINT})"
    if ip.is_reserved:
        return "a reserved address"
    if allow_private:
        return None
    if ip.is_private or not ip.is_global:
        return f"a private address ({_PRIVATE_HINT})"
    return None


def _guarded_transport(limits: ImageLimits) -> httpx.HTTPTransport:
    """An httpx transport whose sockets connect only to addresses re-checked at connect time, which
    closes the DNS-rebinding gap between the per-hop check and httpx's own lookup."""
    import httpcore
    import httpx

    class GuardedBackend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore.SyncBackend()

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            last: Exception | None = None
            for address in _resolve_allowed(host, port, limits):
                try:
                    return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
                except httpcore.ConnectError as exc:  # try the host's next address
                    last = exc
            assert last is not None
            raise last

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:
            raise ImageError("url_refused", "unix sockets are not allowed")

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    transport = httpx.HTTPTransport(trust_env=False)
    if hasattr(transport, "_pool"):  # httpx keeps its httpcore pool here (0.23 .. 0.28)
        transport._pool.close()
        transport._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), network_backend=GuardedBackend()
        )
    return transport


def _check_response(resp: httpx.Response, label: str) -> None:
    """Refuse error statuses and content types that cannot be an image."""
    if not 200 <= resp.status_code < 300:
        raise ImageError("url_refused", f"{label} answered HTTP {resp.status_code}")
    raw_type = resp.headers.get("content-type", "")
    media = raw_type.split(";", 1)[0].strip().lower()
    if not (media.startswith("image/") or media in _URL_MEDIA):
        shown = media[:80] or "none"
        raise ImageError(
            "url_refused",
            f"{label} sent content type {shown!r}, not an image (want image/*, application/dicom "
            "or application/octet-stream)",
        )


def _read_body(resp: httpx.Response, label: str, limits: ImageLimits, deadline: float) -> bytes:
    """Stream the body, aborting as soon as it passes ``max_bytes`` or the overall deadline."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise ImageError(
            "too_large", f"{label}: {int(declared):,} bytes is over the limit of {limits.max_bytes:,}"
        )
    body = bytearray()
    for chunk in resp.iter_bytes():
        body += chunk
        if len(body) > limits.max_bytes:
            raise ImageError("too_large", f"{label}: body is over the limit of {limits.max_bytes:,} bytes")
        if time.monotonic() > deadline:
            raise ImageError("url_timeout", f"{label}: download took longer than {limits.url_timeout_s:g} s")
    return bytes(body)


# ------------------------------------------------------------------------------------ Pillow path


def _check_dimensions(width: int, height: int, limits: ImageLimits, what: str) -> None:
    """Refuse a size from the header, before any pixel is decoded (decompression bombs)."""
    if width <= 0 or height <= 0:
        raise ImageError("not_an_image", f"{what} has an empty size {width}x{height}")
    if width > limits.max_side or height > limits.max_side:
        raise ImageError("too_large", f"{what} is {width}x{height}, over the side limit of {limits.max_side}")
    if width * height > limits.max_pixels:
        raise ImageError(
            "too_large", f"{what} is {width}x{height} = {width * height:,} pixels, over {limits.max_pixels:,}"
        )


def _decode_pil(data: bytes, limits: ImageLimits, origin: str) -> tuple[Image.Image, str, list[Note]]:
    """Decode with Pillow's allow-listed plugins and normalise to 8-bit L or RGB."""
    from PIL import Image, UnidentifiedImageError

    notes: list[Note] = []
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
            fmt = im.format or "unknown"
            _check_dimensions(im.width, im.height, limits, f"{origin} ({fmt})")
            if getattr(im, "is_animated", False):
                im.seek(0)
                notes.append(_note("image_first_frame", f"{fmt} has several frames; used the first"))
            im.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError("too_large", f"{origin}: refused as a decompression bomb ({exc})") from None
        except UnidentifiedImageError:
            raise ImageError(
                "not_an_image", f"{origin}: not a recognised image (PNG, JPEG, DICOM, ...)"
            ) from None
        except Exception as exc:  # Pillow raises many types on corrupt data; none may escape as a crash
            raise ImageError("not_an_image", f"{origin}: corrupt or truncated image: {exc}") from None
    try:
        upright, oriented = _exif_upright(im)
        image, converted = _to_l_or_rgb(upright)
    except Exception as exc:  # e.g. a mode Pillow cannot convert to RGB
        raise ImageError("not_an_image", f"{origin}: cannot convert the {im.mode} image: {exc}") from None
    return _pixels_only(image, im), fmt, notes + oriented + converted


def _pixels_only(image: Image.Image, opened: Image.Image) -> Image.Image:
    """Detach from the source file and drop its metadata: text chunks, EXIF and XMP can carry
    identifiers, and the open file would keep the source bytes alive as long as the image."""
    if image is opened:
        image = image.copy()
    image.info = {}
    return image


def _exif_upright(im: Image.Image) -> tuple[Image.Image, list[Note]]:
    """Apply EXIF orientation so pixels (and boxes drawn on them) are as a viewer displays them."""
    from PIL import ImageOps

    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block is not worth refusing the image
        return im, [_note("image_exif_unreadable", "EXIF data could not be read; orientation not applied")]
    if orientation not in range(2, 9):
        return im, []
    upright = ImageOps.exif_transpose(im)
    return upright, [_note("image_oriented", f"applied EXIF orientation {orientation}")]


def _to_l_or_rgb(im: Image.Image) -> tuple[Image.Image, list[Note]]:
    """8-bit L stays; deeper grayscale is min/max scaled; anything else goes via RGB, then to L when
    its three channels are equal (a gray radiograph saved as colour)."""
    mode = im.mode
    if mode == "L":
        return im, []
    if mode in _SIXTEEN_BIT_MODES:
        return _stretch_to_l(im), [_note("image_converted", f"{mode} scaled to 8-bit L by its min/max")]
    if mode in ("1", "LA", "La"):
        return im.convert("L"), [_note("image_converted", f"{mode} converted to L")]
    rgb = im if mode == "RGB" else im.convert("RGB")
    if _channels_equal(rgb):
        gray = rgb.getchannel(0)
        return gray, [_note("image_converted", f"{mode} with equal colour channels converted to L")]
    if mode == "RGB":
        return rgb, []
    return rgb, [_note("image_converted", f"{mode} converted to RGB")]


def _channels_equal(rgb: Image.Image) -> bool:
    import numpy as np

    arr = np.asarray(rgb)
    return bool(np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]))


def _stretch_to_l(im: Image.Image) -> Image.Image:
    import numpy as np

    arr = np.asarray(im)
    return _l_image(_scale_to_uint8(arr, float(arr.min()), float(arr.max())))


def _scale_to_uint8(arr: npt.NDArray[Any], lo: float, hi: float) -> npt.NDArray[np.uint8]:
    """Map [lo, hi] linearly onto 0..255 (clipped, rounded); a flat image becomes black."""
    import numpy as np

    if not hi > lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    out = arr.astype(np.float32)
    out -= np.float32(lo)
    out *= np.float32(255.0 / (hi - lo))
    np.clip(out, 0.0, 255.0, out=out)
    out += np.float32(0.5)
    return out.astype(np.uint8)


def _l_image(arr: npt.NDArray[np.uint8]) -> Image.Image:
    from PIL import Image

    return Image.fromarray(arr)


def _note(code: str, message: str) -> Note:
    return Note(stage="image", code=code, message=message)


# ------------------------------------------------------------------------------------- DICOM path
# PRIVACY: nothing read from the header may reach a message, a note or a log line, except the
# technical facts named below (transfer syntax, frame count, size, photometric defined term).


def _decode_dicom(data: bytes, limits: ImageLimits) -> tuple[Image.Image, list[Note], View | None]:
    """DICOM -> 8-bit display image: modality LUT, then VOI LUT or window (else min/max), then
    MONOCHROME1 inversion. pydicom warnings are counted but never shown (they can quote values)."""
    try:
        import pydicom  # noqa: F401
    except ImportError:
        raise ImageError("dicom_unavailable", DICOM_NEEDS_PYDICOM) from None
    withheld: list[str] = []
    token = _WITHHELD_LOGS.set(withheld)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _withhold_pydicom_logs()
            image, notes, view = _dicom_to_image(data, limits)
    except ImageError:
        raise
    except Exception as exc:  # a malformed attribute; its message could quote a value, its type not
        raise ImageError("dicom_invalid", f"the DICOM header is malformed ({type(exc).__name__})") from None
    finally:
        _WITHHELD_LOGS.reset(token)
    if caught or withheld:
        notes.append(
            _note(
                "dicom_warnings",
                f"pydicom reported {len(caught) + len(withheld)} warning(s) or log record(s) while "
                "decoding (withheld: they can quote header values)",
            )
        )
    return image, notes, view


class _WithholdPydicomLogs(logging.Filter):
    """Drops pydicom log records emitted on a thread that is decoding DICOM here (pydicom logs
    invalid values verbatim, UIDs included); counts them instead. Other threads are unaffected."""

    def filter(self, record: logging.LogRecord) -> bool:
        withheld = _WITHHELD_LOGS.get()
        if withheld is None:
            return True
        withheld.append(record.levelname)
        return False


_LOG_FILTER = _WithholdPydicomLogs()


def _withhold_pydicom_logs() -> None:
    """Attach the filter to pydicom's loggers (idempotent; logger filters do not apply to records
    propagated from children, so each pydicom logger gets its own)."""
    names = [n for n in list(logging.Logger.manager.loggerDict) if n.split(".", 1)[0] == "pydicom"]
    for name in ["pydicom", *names]:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


def _dicom_to_image(data: bytes, limits: ImageLimits) -> tuple[Image.Image, list[Note], View | None]:
    ds = _read_dataset(data)
    photometric = _check_dicom_header(ds, limits)
    arr = _dicom_pixels(ds)
    if photometric in _MONOCHROME:
        image, notes = _dicom_monochrome(arr, ds, invert=photometric == "MONOCHROME1")
    else:
        image, notes = _dicom_colour(arr, ds, photometric)
    return image, notes, _DICOM_VIEWS.get(str(ds.get("ViewPosition", "")).strip().upper())


def _read_dataset(data: bytes) -> Dataset:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        return dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError:
        raise ImageError("not_an_image", "not a valid DICOM file") from None
    except Exception as exc:  # the message could quote a value; the type name cannot
        raise ImageError(
            "not_an_image", f"the DICOM file could not be parsed ({type(exc).__name__})"
        ) from None


def _dicom_int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    """An integer attribute; a missing or malformed one is dicom_invalid (named, value withheld)."""
    value = ds.get(keyword, default)
    try:
        if value is None or value == "":
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ImageError("dicom_invalid", f"DICOM attribute {keyword} is missing or not an integer") from None


def _check_dicom_header(ds: Dataset, limits: ImageLimits) -> str:
    """Everything that can be refused without decoding pixels. Returns the photometric interpretation."""
    if "PixelData" not in ds:
        raise ImageError("dicom_no_pixels", "the DICOM file has no pixel data (PixelData is absent)")
    frames = _dicom_int(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise ImageError(
            "dicom_multiframe", f"multi-frame DICOM ({frames} frames) is not supported; export one frame"
        )
    rows, cols = _dicom_int(ds, "Rows"), _dicom_int(ds, "Columns")
    _check_dimensions(cols, rows, limits, "DICOM image")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _MONOCHROME | _DICOM_COLOUR:
        shown = photometric if photometric in _DICOM_KNOWN_PHOTOMETRIC else "an unrecognised value"
        raise ImageError("dicom_unsupported", f"DICOM photometric interpretation {shown} is not supported")
    _check_codec(ds)
    return photometric


def _check_codec(ds: Dataset) -> None:
    """Refuse compressed pixel data that no installed plugin can decode, naming what to install."""
    from pydicom.pixels.decoders.base import get_decoder

    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is None:
        raise ImageError("dicom_invalid", "the DICOM file meta has no TransferSyntaxUID")
    name = (
        f"{tsyntax.name} ({tsyntax})" if tsyntax.name != str(tsyntax) else "an unrecognised transfer syntax"
    )
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise ImageError("dicom_codec_missing", f"no pixel decoder exists for {name}") from None
    if not decoder.is_available:
        wanted = "; ".join(decoder.missing_dependencies) or "a pydicom pixel-data plugin"
        raise ImageError(
            "dicom_codec_missing",
            f"the pixel data is compressed as {name} and no installed plugin decodes it; "
            f"install one of: {wanted}",
        )


def _dicom_pixels(ds: Dataset) -> npt.NDArray[Any]:
    try:
        arr: npt.NDArray[Any] = ds.pixel_array
    except Exception as exc:  # the message could quote a value; the type name cannot
        raise ImageError(
            "dicom_decode_failed", f"the DICOM pixel data could not be decoded ({type(exc).__name__})"
        ) from None
    return arr


def _dicom_monochrome(arr: npt.NDArray[Any], ds: Dataset, *, invert: bool) -> tuple[Image.Image, list[Note]]:
    """Stored values -> modality values -> VOI (LUT, window, or min/max) -> 0..255 (-> inverted)."""
    import numpy as np
    from pydicom.pixels.processing import apply_modality_lut

    notes: list[Note] = []
    if _has_modality_transform(ds):
        try:
            arr = apply_modality_lut(arr, ds)
        except Exception as exc:  # the message could quote a value; the type name cannot
            raise ImageError(
                "dicom_decode_failed",
                f"the DICOM modality LUT / rescale could not be applied ({type(exc).__name__})",
            ) from None
        notes.append(_note("dicom_modality_lut", "applied the DICOM modality LUT / rescale"))
    values, lo, hi, voi_note = _dicom_voi(arr, ds)
    notes.append(voi_note)
    img8 = _scale_to_uint8(values, lo, hi)
    if invert:
        np.subtract(np.uint8(255), img8, out=img8)
        notes.append(_note("dicom_inverted", "MONOCHROME1 inverted so that dense structures are bright"))
    return _l_image(img8), notes


def _has_modality_transform(ds: Dataset) -> bool:
    """True when the modality step changes values (mirrors pydicom: a LUT, or slope AND intercept)."""
    if ds.get("ModalityLUTSequence"):
        return True
    if "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
        return False
    try:
        return float(ds.RescaleSlope) != 1.0 or float(ds.RescaleIntercept) != 0.0
    except (TypeError, ValueError):
        raise ImageError("dicom_invalid", "DICOM RescaleSlope/RescaleIntercept are not numbers") from None


def _dicom_voi(arr: npt.NDArray[Any], ds: Dataset) -> tuple[npt.NDArray[Any], float, float, Note]:
    """The VOI step and the output range to map onto 0..255. A VOI the file gets wrong falls back to
    min/max with a note rather than failing the image."""
    from pydicom.pixels.processing import apply_voi_lut

    lut_items = ds.get("VOILUTSequence")
    has_lut = bool(lut_items) and None not in (lut_items[0].get("LUTDescriptor"), lut_items[0].get("LUTData"))
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    fallback = "min/max"
    try:
        if has_lut:
            out = apply_voi_lut(arr, ds, prefer_lut=True)
            return (
                out,
                float(out.min()),
                float(out.max()),
                _note("dicom_voi_lut", "applied the DICOM VOI LUT"),
            )
        if has_window:
            import numpy as np

            out = apply_voi_lut(arr, ds, prefer_lut=False)
            with np.errstate(all="ignore"):  # SIGMOID overflows exp() at the probe; the limit is right
                edges = apply_voi_lut(np.array([-1e12, 1e12]), ds, prefer_lut=False)  # output range
            lo, hi = float(edges.min()), float(edges.max())
            return out, lo, hi, _note("dicom_window", "applied the DICOM window (center/width)")
    except Exception as exc:
        fallback = f"min/max (the file's VOI could not be applied: {type(exc).__name__})"
    lo, hi = float(arr.min()), float(arr.max())
    return arr, lo, hi, _note("dicom_minmax", f"no usable VOI LUT or window; scaled by {fallback}")


def _dicom_colour(arr: npt.NDArray[Any], ds: Dataset, photometric: str) -> tuple[Image.Image, list[Note]]:
    """Colour DICOM (pydicom already converts YBR to RGB) -> 8-bit RGB, or L if the channels agree."""
    import numpy as np
    from PIL import Image

    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ImageError("dicom_unsupported", "colour DICOM pixel data is not three samples per pixel")
    notes: list[Note] = []
    if arr.dtype != np.uint8:
        bits = _dicom_int(ds, "BitsStored", 8)
        arr = _scale_to_uint8(arr, 0.0, float(2**bits - 1))
        notes.append(_note("image_converted", "colour samples scaled to 8 bits"))
    if photometric != "RGB":
        notes.append(_note("image_converted", f"{photometric} converted to RGB"))
    image, more = _to_l_or_rgb(Image.fromarray(np.ascontiguousarray(arr)))
    return image, notes + more
