"""Image input: real radiographs, conversions, hostile inputs, limits, roots and URL fetching.

No network: URL tests use a threaded http.server on 127.0.0.1 (with allow_private_urls=True), and the
refusal tests check that no socket was even opened.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from auditor.images import (
    IMAGE_ERROR_CODES,
    ImageError,
    ImageLimits,
    LoadedImage,
    load_image,
    load_image_bytes,
    sniff_format,
)

NIH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images"
NIH_L, NIH_RGBA, NIH_512 = "00000002_000.png", "00000004_000.png", "00027426_000.png"
needs_nih = pytest.mark.skipif(not (NIH / NIH_L).is_file(), reason=f"NIH sample images not found in {NIH}")
LOOSE = ImageLimits(allow_private_urls=True, url_timeout_s=5.0)


def _raises(code: str, fn: Any, *args: Any, **kwargs: Any) -> ImageError:
    with pytest.raises(ImageError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, f"{info.value.code}: {info.value}"
    assert info.value.code in IMAGE_ERROR_CODES
    return info.value


def _png(im: Image.Image, **params: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **params)
    return buf.getvalue()


def _jpeg(im: Image.Image, **params: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, **params)
    return buf.getvalue()


def _corr(a: Any, b: Any) -> float:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


def _header_only_png(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge 1-bit image, with a token IDAT: tiny on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def gradient() -> Image.Image:
    """A small non-square gray image with structure (so orientation and scaling are observable)."""
    y, x = np.mgrid[0:48, 0:64]
    return Image.fromarray(((x * 3 + y) % 256).astype(np.uint8))


# ---------------------------------------------------------------------------------- real radiographs


@needs_nih
@pytest.mark.parametrize("name", [NIH_L, NIH_RGBA, NIH_512])
def test_nih_png_loads_with_size_hash_and_format(name: str) -> None:
    path = NIH / name
    raw = path.read_bytes()
    with Image.open(path) as original:
        size, mode = original.size, original.mode
        first_channel = np.asarray(original)[..., 0] if mode == "RGBA" else np.asarray(original)
    loaded = load_image(str(path))
    assert loaded.image.mode == "L"
    assert (loaded.info.width, loaded.info.height) == size == loaded.image.size
    assert loaded.info.sha256 == hashlib.sha256(raw).hexdigest()
    assert loaded.info.source_format == "PNG"
    assert np.array_equal(np.asarray(loaded.image), first_channel)
    codes = [n.code for n in loaded.notes]
    assert codes == (["image_converted"] if mode == "RGBA" else [])
    rgb = loaded.rgb()
    assert rgb.mode == "RGB" and rgb.size == size
    assert rgb is not loaded.rgb()  # a fresh copy each time: callers may mutate it


@needs_nih
def test_pathlike_and_expanduser_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_image(NIH / NIH_512).info.width == 512
    monkeypatch.setenv("HOME", str(NIH))
    assert load_image(f"~/{NIH_512}").info.width == 512


@needs_nih
def test_jpeg_of_a_radiograph(tmp_path: Path) -> None:
    with Image.open(NIH / NIH_L) as src:
        source = src.copy()
    path = tmp_path / "cxr.jpg"
    path.write_bytes(_jpeg(source))
    loaded = load_image(str(path))
    assert loaded.info.source_format == "JPEG"
    assert loaded.image.mode == "L" and loaded.image.size == source.size
    assert _corr(loaded.image, source) > 0.99


def test_jpeg_exif_orientation_6_rotates(tmp_path: Path) -> None:
    im = Image.new("L", (40, 20), 0)
    im.paste(255, (0, 0, 20, 20))  # bright left half
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg(im, exif=exif))
    loaded = load_image(str(path))
    assert loaded.image.size == (20, 40)
    arr = np.asarray(loaded.image, dtype=np.float64)
    assert arr[:20].mean() > 200 and arr[20:].mean() < 50  # left became top
    assert "image_oriented" in [n.code for n in loaded.notes]


def test_sixteen_bit_png_is_scaled_to_8bit_l(tmp_path: Path) -> None:
    y, x = np.mgrid[0:64, 0:80]
    arr = (1000 + x * 37 + y * 11).astype(np.uint16)
    im16 = Image.fromarray(arr)
    assert im16.mode.startswith("I;16")
    path = tmp_path / "deep.png"
    path.write_bytes(_png(im16))
    loaded = load_image(str(path))
    out = np.asarray(loaded.image)
    assert loaded.image.mode == "L" and out.dtype == np.uint8 and loaded.image.size == (80, 64)
    assert out.min() == 0 and out.max() == 255
    assert _corr(out, arr) > 0.999
    assert [n.code for n in loaded.notes] == ["image_converted"]
    assert "8-bit" in loaded.notes[0].message


def test_colour_rgb_stays_rgb_and_gray_rgb_becomes_l(gradient: Image.Image) -> None:
    gray_rgb = load_image_bytes(_png(gradient.convert("RGB")))
    assert gray_rgb.image.mode == "L"
    assert np.array_equal(np.asarray(gray_rgb.image), np.asarray(gradient))
    colour = gradient.convert("RGB")
    colour.putpixel((3, 3), (255, 0, 0))
    loaded = load_image_bytes(_png(colour))
    assert loaded.image.mode == "RGB" and loaded.notes == ()
    assert loaded.rgb().getpixel((3, 3)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["1", "LA", "P", "RGBA", "I", "F", "CMYK"])
def test_other_modes_become_8bit(gradient: Image.Image, mode: str) -> None:
    im = gradient.convert(mode)
    buf = io.BytesIO()
    im.save(buf, {"CMYK": "JPEG", "I": "TIFF", "F": "TIFF"}.get(mode, "PNG"))
    data = buf.getvalue()
    loaded = load_image_bytes(data)
    assert loaded.image.mode in ("L", "RGB")
    assert loaded.image.size == gradient.size
    assert any(n.code == "image_converted" for n in loaded.notes)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("L", (8, 8), 10), Image.new("L", (8, 8), 240)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    loaded = load_image_bytes(buf.getvalue())
    assert loaded.info.source_format == "GIF"
    assert "image_first_frame" in [n.code for n in loaded.notes]
    assert np.asarray(loaded.image).mean() < 50


# ------------------------------------------------------------------------------ data: URI and base64


def test_data_uri_and_raw_base64(gradient: Image.Image) -> None:
    data = _png(gradient)
    b64 = base64.b64encode(data).decode()
    digest = hashlib.sha256(data).hexdigest()
    for source in (
        f"data:image/png;base64,{b64}",
        f"data:;base64,{b64}",
        b64,
        "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)),  # MIME-wrapped
        base64.b64encode(_jpeg(gradient)).decode(),  # starts with "/9j/", like an absolute path
    ):
        loaded = load_image(source)
        assert loaded.image.size == gradient.size
        if source.startswith("data:") or source == b64:
            assert loaded.info.sha256 == digest


def test_base64_that_is_not_an_image() -> None:
    text = base64.b64encode(b"just some words, certainly not a radiograph").decode()
    err = _raises("not_an_image", load_image, text)
    assert "base64" in str(err)
    _raises("not_an_image", load_image, "data:image/png;base64," + text)
    _raises("not_an_image", load_image, "data:image/png;base64,!!!not base64!!!")
    _raises("not_an_image", load_image, "data:image/png;base64")


def test_base64_over_the_byte_limit(gradient: Image.Image) -> None:
    b64 = base64.b64encode(_png(gradient)).decode()
    small = ImageLimits(max_bytes=50)
    _raises("too_large", load_image, b64, small)
    _raises("too_large", load_image, f"data:image/png;base64,{b64}", small)


# ---------------------------------------------------------------------------------- local files


def test_missing_file_directory_and_text(tmp_path: Path) -> None:
    err = _raises("not_found", load_image, str(tmp_path / "nope.png"))
    assert str(err) == f"no such file: {tmp_path / 'nope.png'}"
    _raises("not_a_file", load_image, str(tmp_path))
    text = tmp_path / "notes.txt"
    text.write_text("No acute cardiopulmonary abnormality.\n" * 20)
    _raises("not_an_image", load_image, str(text))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _raises("not_an_image", load_image, str(empty))
    _raises("not_found", load_image, "   ")


def test_metadata_is_dropped(gradient: Image.Image) -> None:
    """PNG text chunks can carry identifiers; the loaded image keeps pixels only."""
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("Comment", "Doe^Jane MRN-123456")
    loaded = load_image_bytes(_png(gradient, pnginfo=meta))
    assert loaded.image.info == {}
    assert "Doe^Jane" not in repr(loaded)


def test_concurrent_loads_leave_warning_filters_alone(gradient: Image.Image) -> None:
    from concurrent.futures import ThreadPoolExecutor

    before = list(warnings.filters)
    blobs = [_png(gradient), _jpeg(gradient), _header_only_png(20000, 20000)] * 12

    def load(blob: bytes) -> str:
        try:
            return load_image_bytes(blob).info.source_format
        except ImageError as err:
            return err.code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(load, blobs))
    assert results == ["PNG", "JPEG", "too_large"] * 12
    assert warnings.filters == before


def test_truncated_png(gradient: Image.Image, tmp_path: Path) -> None:
    big = gradient.resize((512, 512)).point(lambda v: (v * 7) % 256)
    data = _png(big)
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    err = _raises("not_an_image", load_image, str(path))
    assert "truncated" in str(err) or "corrupt" in str(err)


def test_refused_formats_are_not_images() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    _raises("not_an_image", load_image_bytes, eps)


def test_decompression_bombs_are_refused_before_decoding() -> None:
    bomb = _header_only_png(20000, 20000)
    assert len(bomb) < 200
    _raises("too_large", load_image_bytes, bomb)  # Pillow's own guard fires first at this size
    assert "49,000,000 pixels" in str(_raises("too_large", load_image_bytes, _header_only_png(7000, 7000)))
    wide = _header_only_png(9000, 100)
    assert "side" in str(_raises("too_large", load_image_bytes, wide))
    # Our own limits loosened: Pillow's guard (warning at ~89 Mpx, error at ~179 Mpx) still refuses.
    loose = ImageLimits(max_pixels=10**10, max_side=10**6)
    assert "bomb" in str(_raises("too_large", load_image_bytes, _header_only_png(10000, 10000), loose))
    assert "bomb" in str(_raises("too_large", load_image_bytes, bomb, loose))


def test_pixel_limit_on_a_normal_image(gradient: Image.Image) -> None:
    _raises("too_large", load_image_bytes, _png(gradient), ImageLimits(max_pixels=1000))
    _raises("too_large", load_image_bytes, _png(gradient), ImageLimits(max_side=32))


def test_byte_limit_checked_before_reading(tmp_path: Path, gradient: Image.Image) -> None:
    path = tmp_path / "img.png"
    data = _png(gradient)
    path.write_bytes(data)
    err = _raises("too_large", load_image, str(path), ImageLimits(max_bytes=len(data) - 1))
    assert f"{len(data):,} bytes" in str(err)
    _raises("too_large", load_image_bytes, data, ImageLimits(max_bytes=10))
    assert load_image(str(path), ImageLimits(max_bytes=len(data))).image.size == gradient.size


def test_roots_confine_paths_including_symlinks(tmp_path: Path, gradient: Image.Image) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    data = _png(gradient)
    (root / "in.png").write_bytes(data)
    (outside / "secret.png").write_bytes(data)
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    limits = ImageLimits(roots=(root,))
    assert load_image(str(root / "in.png"), limits).info.sha256 == hashlib.sha256(data).hexdigest()
    _raises("path_refused", load_image, str(outside / "secret.png"), limits)
    _raises("path_refused", load_image, str(root / "link.png"), limits)
    _raises("path_refused", load_image, str(root / "dirlink" / "secret.png"), limits)
    _raises("path_refused", load_image, str(root / ".." / "outside" / "secret.png"), limits)
    # refused before any existence check, so the answer reveals nothing about the outside
    _raises("path_refused", load_image, str(outside / "absent.png"), limits)
    _raises("not_found", load_image, str(root / "absent.png"), limits)
    assert load_image(str(root / "link.png")).image.size == gradient.size  # no roots: allowed
    # base64-looking text that is no image: named as such, whether or not it is inside a root
    text = base64.b64encode(b"plain words, not pixels, not a path").decode()
    _raises("not_an_image", load_image, text, limits)


# ------------------------------------------------------------------------------------------ URLs


class _Handler(BaseHTTPRequestHandler):
    body: ClassVar[bytes] = b""
    hits: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str | None, length: bool = True, **hdr: str) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for key, value in hdr.items():
            self.send_header(key, value)
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may hang up on purpose (size cap)
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.hits.append(self.path)
        status, body, ctype, headers = _ROUTES.get(self.path, (404, b"", None, {}))
        if self.path == "/slow":
            time.sleep(1.0)
        length = self.path != "/unlimited"  # close-delimited body: only the stream cap can stop it
        self._send(status, self.body if body is None else body, ctype, length, **headers)


# path -> (status, body (None: the test image), content type, extra headers)
_ROUTES: dict[str, tuple[int, bytes | None, str | None, dict[str, str]]] = {
    "/img.png": (200, None, "image/png", {}),
    "/octet": (200, None, "application/octet-stream", {}),
    "/missing": (404, b"gone", "text/plain", {}),
    "/html": (200, b"<html></html>", "text/html; charset=utf-8", {}),
    "/notype": (200, None, None, {}),
    "/unlimited": (200, None, "image/png", {}),
    "/slow": (200, None, "image/png", {}),
    "/loop": (302, b"", None, {"Location": "/loop"}),
    "/to-img": (301, b"", None, {"Location": "/img.png"}),
    "/to-meta": (302, b"", None, {"Location": "http://169.254.169.254/latest/meta-data"}),
    "/to-ftp": (302, b"", None, {"Location": "ftp://example.org/x.png"}),
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    arr = (np.arange(256 * 256).reshape(256, 256) * 2654435761 % 251).astype(np.uint8)
    _Handler.body = _png(Image.fromarray(arr))  # incompressible: a few tens of KB
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail loudly if anything opens a TCP connection to a non-test address."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> None:
        if not (isinstance(address, tuple) and address[0] == "127.0.0.1"):
            attempts.append(address)
            raise AssertionError(f"tried to connect to {address}")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def test_url_served_png(server: str) -> None:
    loaded = load_image(f"{server}/img.png", LOOSE)
    assert loaded.info.sha256 == hashlib.sha256(_Handler.body).hexdigest()
    assert loaded.info.source_format == "PNG" and loaded.image.size == (256, 256)
    assert load_image(f"{server}/octet", LOOSE).info.sha256 == loaded.info.sha256
    assert load_image(f"{server}/to-img", LOOSE).info.sha256 == loaded.info.sha256


def test_url_http_errors_and_content_types(server: str) -> None:
    assert "404" in str(_raises("url_refused", load_image, f"{server}/missing", LOOSE))
    assert "text/html" in str(_raises("url_refused", load_image, f"{server}/html", LOOSE))
    assert "none" in str(_raises("url_refused", load_image, f"{server}/notype", LOOSE))


def test_url_error_messages_name_only_the_origin(server: str) -> None:
    err = _raises("url_refused", load_image, f"{server}/missing?token=s3cret", LOOSE)
    assert "s3cret" not in str(err) and "/missing" not in str(err) and server in str(err)


def test_url_body_over_the_byte_limit(server: str) -> None:
    small = ImageLimits(allow_private_urls=True, max_bytes=len(_Handler.body) // 2)
    _raises("too_large", load_image, f"{server}/img.png", small)  # refused on Content-Length
    _raises("too_large", load_image, f"{server}/unlimited", small)  # refused while streaming


def test_url_timeout(server: str) -> None:
    start = time.monotonic()
    _raises(
        "url_timeout", load_image, f"{server}/slow", ImageLimits(allow_private_urls=True, url_timeout_s=0.3)
    )
    assert time.monotonic() - start < 0.9


def test_url_redirects(server: str, no_connect: list[object]) -> None:
    err = _raises("url_refused", load_image, f"{server}/loop", LOOSE)
    assert "too many redirects" in str(err)
    before = len(_Handler.hits)
    _raises(
        "url_refused", load_image, f"{server}/loop", ImageLimits(allow_private_urls=True, max_redirects=1)
    )
    assert len(_Handler.hits) - before == 2
    assert "ftp" in str(_raises("url_refused", load_image, f"{server}/to-ftp", LOOSE))
    assert no_connect == []


def test_redirect_to_metadata_is_refused_per_hop(server: str, no_connect: list[object]) -> None:
    err = _raises("url_refused", load_image, f"{server}/to-meta", LOOSE)
    assert "169.254.169.254" in str(err)
    assert no_connect == []


def test_default_limits_refuse_loopback_without_connecting(server: str, no_connect: list[object]) -> None:
    before = len(_Handler.hits)
    assert "loopback" in str(_raises("url_refused", load_image, f"{server}/img.png"))
    port = server.rsplit(":", 1)[1]
    _raises("url_refused", load_image, f"http://localhost:{port}/img.png")
    assert len(_Handler.hits) == before and no_connect == []


ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 form of 169.254.169.254
    "http://0.0.0.0:80/",
    "http://224.0.0.1/",
    "http://[fe80::1]/",
    "http://240.0.0.1/",
]


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
def test_forbidden_addresses_refused_without_connecting(url: str, no_connect: list[object]) -> None:
    _raises("url_refused", load_image, url)
    _raises("url_refused", load_image, url, LOOSE)  # even when private addresses are allowed
    assert no_connect == []


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/", "http://192.168.1.1/", "http://100.64.0.1/", "http://[::1]/"]
)
def test_private_addresses_refused_by_default(url: str, no_connect: list[object]) -> None:
    assert "allow_private_urls" in str(_raises("url_refused", load_image, url))
    assert no_connect == []


@pytest.mark.parametrize("source", ["ftp://example.org/x.png", "gopher://example.org/"])
def test_other_schemes_refused_without_connecting(source: str, no_connect: list[object]) -> None:
    _raises("url_refused", load_image, source, LOOSE)
    assert no_connect == []


def test_file_uris_are_local_paths_with_the_same_guards(tmp_path: Path, no_connect: list[object]) -> None:
    folder = tmp_path / "with space"
    folder.mkdir()
    image = folder / "x.png"
    image.write_bytes(_png(Image.new("L", (8, 8), 50)))
    for uri in (image.as_uri(), f"file://localhost{image.as_uri()[7:]}", f"file:{image}"):
        assert load_image(uri).info.width == 8, uri
    assert "no such file: /etc/nope.png" in str(_raises("not_found", load_image, "file:///etc/nope.png"))
    _raises("not_an_image", load_image, "file:///etc/passwd")
    _raises("path_refused", load_image, image.as_uri(), ImageLimits(roots=(tmp_path / "other",)))
    _raises("url_refused", load_image, "file://fileserver/share/x.png")
    assert no_connect == []


def test_a_missing_relative_path_says_relative_to_what(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    err = _raises("not_found", load_image, "images/x.png")
    assert str(tmp_path) in str(err) and "absolute path" in str(err)


def test_the_private_url_refusal_names_the_flag_and_the_variable(no_connect: list[object]) -> None:
    message = str(_raises("url_refused", load_image, "http://192.168.1.1/x.png"))
    assert "--allow-private-urls" in message and "CXR_AUDITOR_ALLOW_PRIVATE_URLS" in message


def test_dns_rebinding_is_caught_at_connect_time(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-hop check sees a public address; the connection-time lookup sees loopback: refused."""
    port = int(server.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"] + ["127.0.0.1"] * 10)

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    before = len(_Handler.hits)
    err = _raises("url_refused", load_image, f"http://rebind.example:{port}/img.png")
    assert "loopback" in str(err) and len(_Handler.hits) == before


def test_unreachable_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connection refused
        _raises("url_unreachable", load_image, f"http://127.0.0.1:{port}/x.png", LOOSE)
    _raises("url_unreachable", load_image, "http://no-such-host.invalid/x.png", LOOSE)


# ---------------------------------------------------------------------------------- small contracts


def test_sniff_format() -> None:
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "PNG"
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff_format(b"\x00" * 128 + b"DICM") == "DICOM"
    assert sniff_format(b"GIF89a") == "GIF"
    assert sniff_format(b"hello") is None and sniff_format(b"") is None


def test_image_error_contract() -> None:
    import pickle

    err = ImageError("too_large", "too big")
    assert isinstance(err, ValueError) and str(err) == "too big"
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, str(back)) == ("too_large", "too big")
    assert err.as_note().model_dump() == {"stage": "image", "code": "too_large", "message": "too big"}


def test_loaded_image_is_frozen(gradient: Image.Image) -> None:
    loaded = load_image_bytes(_png(gradient))
    assert isinstance(loaded, LoadedImage)
    with pytest.raises(AttributeError):
        loaded.notes = ()  # type: ignore[misc]


def test_import_is_lazy_and_never_touches_torch(gradient: Image.Image, tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    path.write_bytes(_png(gradient))
    code = (
        "import sys, json; import auditor.images as m; "
        "lazy = [k for k in ('PIL', 'numpy', 'httpx', 'pydicom') if k in sys.modules]; "
        f"m.load_image({str(path)!r}); print(json.dumps([lazy, 'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lazy, torch_loaded = json.loads(out.stdout)
    assert lazy == [] and torch_loaded is False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_images_raise_only_image_errors(data: st.DataObject, gradient: Image.Image) -> None:
    """Flip, cut or splice bytes of valid PNG/JPEG files: the result is an image or an ImageError."""
    source = bytearray(data.draw(st.sampled_from([_png(gradient), _jpeg(gradient)])))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(source) - 1))
        source[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(source)))
    try:
        loaded = load_image_bytes(bytes(source[:cut]))
    except ImageError as err:
        assert err.code in IMAGE_ERROR_CODES
    else:
        assert loaded.image.mode in ("L", "RGB")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_image_errors(blob: bytes) -> None:
    try:
        load_image_bytes(blob)
    except ImageError as err:
        assert err.code in IMAGE_ERROR_CODES
