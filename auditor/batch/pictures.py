"""The pictures of a worklist run: for each audited study, its radiograph with boxes coloured by flag,
drawn while the image is still in memory and kept as files beside the report, so a resumed run need
not load finished images again.

Two sizes: the picture (``pictures/<id hash>.jpg``, 640 px, opened on click) and its thumbnail
(``pictures/small/<id hash>.jpg``, a few KB), which is the only copy embedded in ``report.html``: a
5,000-study page must open in a browser, and full-size pictures inlined would make it gigabytes.
Files are named by a hash of the study id (ids may hold any character) and never by a name taken
from the results file, so an edited line cannot point the report at some other file.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from auditor.batch.store import PICTURES, PictureRef, ResultLine, picture_name, picture_path

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from auditor.images import LoadedImage
    from auditor.overlay import RenderedImage
    from auditor.schema import AuditReport

PICTURE_SIDE: Final = 640
PICTURE_BYTES: Final = 120_000
"""Large enough to see a nodule's box when opened (the page links it from the thumbnail)."""
THUMBS: Final = f"{PICTURES}/small"
THUMB_SIDE: Final = 200
THUMB_BYTES: Final = 7_000
"""The embedded copy: base64 makes 7 KB about 9.3 KB of page, leaving room for the row's text within
the page's budget of 15 KB a study."""
_THUMB_QUALITIES: Final = (75, 60, 45, 30)


def thumb_name(ident: str) -> str:
    return f"{THUMBS}/{hashlib.sha256(ident.encode('utf-8')).hexdigest()[:24]}.jpg"


def _reduced(image: PILImage) -> PILImage:
    """A cheap integer box-reduce that leaves at least PICTURE_SIDE px for the overlay's Lanczos resize:
    the same picture for a fraction of the time (drawing was most of a study's cost)."""
    factor = max(image.size) // PICTURE_SIDE
    return image.reduce(factor) if factor >= 2 else image


def draw(image: LoadedImage | None, report: AuditReport, out_dir: Path, ident: str) -> PictureRef | None:
    """The picture with boxes and flags and its thumbnail, saved under pictures/; None when there is
    nothing to draw on."""
    from auditor.overlay import render_findings

    if image is None:
        return None
    try:
        pic = render_findings(
            _reduced(image.image),
            report.grounding,
            report.comparison,
            max_side=PICTURE_SIDE,
            image_format="JPEG",
            max_bytes=PICTURE_BYTES,
            flag_lines=False,  # the report lists the flags beside the picture
        )
    except ValueError:
        return None
    name = picture_name(ident)
    (out_dir / name).write_bytes(pic.data)
    (out_dir / thumb_name(ident)).write_bytes(make_thumbnail(pic.data).data)
    return PictureRef(file=name, mime_type=pic.mime_type, width=pic.width, height=pic.height)


def make_thumbnail(picture: bytes) -> RenderedImage:
    """A JPEG of at most THUMB_SIDE px and, quality permitting, THUMB_BYTES. The picture is decoded at a
    reduced scale (JPEG draft mode) and resized once: about a millisecond."""
    from PIL import Image

    from auditor.overlay import RenderedImage

    with Image.open(io.BytesIO(picture)) as im:
        im.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
        rgb = im.convert("RGB")
    scale = min(1.0, THUMB_SIDE / max(rgb.size))
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    small = rgb.resize(size, Image.Resampling.LANCZOS) if size != rgb.size else rgb
    data = b""
    for quality in _THUMB_QUALITIES:
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=quality, optimize=True)
        data = buf.getvalue()
        if len(data) <= THUMB_BYTES:
            break
    return RenderedImage(data, "image/jpeg", small.width, small.height)


def thumbnail(out_dir: Path, line: ResultLine) -> RenderedImage | None:
    """The thumbnail of a results line's picture: read, or made from the picture and saved when a run
    from before thumbnails left none. None when the line has no picture or its file is unreadable."""
    from auditor.overlay import RenderedImage

    full = picture_path(out_dir, line)
    if full is None:
        return None
    small = out_dir / thumb_name(line.id)
    try:
        data = small.read_bytes()
    except OSError:
        try:
            made = make_thumbnail(full.read_bytes())
        except (OSError, ValueError):  # PIL's UnidentifiedImageError is an OSError
            return None
        small.write_bytes(made.data)
        return made
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except (OSError, ValueError):
        return None
    return RenderedImage(data, "image/jpeg", width, height)


def drop_orphans(out_dir: Path, lines: Sequence[ResultLine]) -> None:
    """Pictures of studies redone or no longer in the worklist would only pile up: remove them."""
    wanted = {picture_name(line.id) for line in lines if line.picture is not None}
    wanted |= {thumb_name(line.id) for line in lines if line.picture is not None}
    for folder in (PICTURES, THUMBS):
        for path in (out_dir / folder).glob("*.jpg"):
            if f"{folder}/{path.name}" not in wanted:
                path.unlink(missing_ok=True)
