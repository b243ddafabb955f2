"""The audit viewer: an MCP Apps UI (extension ``io.modelcontextprotocol/ui``) that hosts able to render
it show beside the conversation when `audit`, `compare` or `ground_image` answers.

The page is one self-contained file (``ui/viewer.html``): inline style and script, no network, and a
Content-Security-Policy that allows only those two inline blocks (by hash) and ``data:`` images. It
gets the tool's input and result from the host over the MCP Apps postMessage protocol, and the pixels
from the app-only tool registered here (`preview_image`), which reloads the image the result was made
from and refuses any other (sha256). Clients without the extension see the same tools and the same
results as before: the extension only adds ``_meta.ui`` links, this resource and that tool.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol, TypeVar

from mcp.server.apps import Apps, ResourceCsp
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, Image
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from mcp_types import CallToolRequestParams
from pydantic import BaseModel, Field

import auditor
from auditor.flag_colours import COLOURS
from auditor.labels import HUMAN_NAMES
from auditor.pipeline import Auditor
from auditor.tool_io import OptionalImageArg, StudyUidArg
from mcp_server import descriptions as text

if TYPE_CHECKING:
    from PIL import Image as PILImage

VIEWER_URI: Final = "ui://cxr-auditor/viewer.html"
PREVIEW_TOOL: Final = "preview_image"
VIEWER_TOOLS: Final = frozenset({"audit", "compare", "ground_image"})
"""The tools whose results open the viewer (their `_meta.ui.resourceUri`)."""
SOURCE_TOOLS: Final = frozenset({"audit", "ground_image"})
"""The tools whose image argument the server remembers, so a `compare` result can show its pixels."""
PREVIEW_SIDE: Final = 768
PREVIEW_QUALITY: Final = 85
MAX_REMEMBERED: Final = 32
MAX_SOURCE_CHARS: Final = 4096
"""A path, URL or study UID is remembered; an image passed inline (data: URI, base64) is not."""
_BLOCK = re.compile(r"<(style|script)>(.*?)</\1>", re.DOTALL)
_T = TypeVar("_T")

Progress = Callable[[str], None]
Sha256Arg = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-f]{64}$",
        description="the sha256 a result records for its image (grounding.image.sha256)",
    ),
]
PreviewSideArg = Annotated[
    int, Field(ge=128, le=1024, description="longest side of the preview in pixels (downscale only)")
]


class Runner(Protocol):
    """The server's way to run blocking work in a worker thread (`mcp_server.app._run`)."""

    def __call__(self, ctx: Context | None, work: Callable[[Progress], _T], steps: int) -> Awaitable[_T]: ...


# ---- the page --------------------------------------------------------------------------------------


def csp_hash(block: str) -> str:
    """The CSP source expression that allows exactly this inline block."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode("ascii") + "'"


def _kind_colours() -> str:
    return ";".join(f"--k-{style.lower()}:rgb{colour}".replace(" ", "") for style, colour in COLOURS.items())


def _page_data() -> str:
    data = {
        "labels": {label.value: name for label, name in HUMAN_NAMES.items()},
        "preview_tool": PREVIEW_TOOL,
        "version": auditor.__version__,
    }
    return json.dumps(data, sort_keys=True).replace("<", "\\u003c")  # never closes its <script>


def content_security_policy(page: str) -> str:
    """Only the page's own inline style and script run; only data: images load; nothing connects."""
    sources: dict[str, list[str]] = {"style": [], "script": []}
    for kind, block in _BLOCK.findall(page):
        sources[kind].append(csp_hash(block))
    return (
        "default-src 'none'; img-src data:; "
        f"style-src {' '.join(sources['style'])}; script-src {' '.join(sources['script'])}; "
        "connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


def viewer_html() -> str:
    """The viewer page as served: the template with its colours, names, disclaimer and CSP filled in."""
    template = (resources.files("mcp_server") / "ui" / "viewer.html").read_text(encoding="utf-8")
    page = (
        template.replace("__KIND_COLOURS__", _kind_colours())
        .replace("__DISCLAIMER__", html.escape(text.DISCLAIMER))
        .replace("__DATA__", _page_data())
    )
    return page.replace("__CSP__", content_security_policy(page))


# ---- the pixels --------------------------------------------------------------------------------------


def preview_jpeg(image: PILImage.Image, max_side: int = PREVIEW_SIDE) -> bytes:
    """A downscaled JPEG of a decoded radiograph (8-bit L or RGB): enough to see where the boxes are,
    small enough to pass through a host's postMessage without weighing on the conversation."""
    from PIL import Image as PILImage

    picture = image if image.mode in ("L", "RGB") else image.convert("RGB")
    picture = picture.copy()
    picture.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=PREVIEW_QUALITY, optimize=True)
    return buffer.getvalue()


class SourceMemory:
    """Which image argument (``image`` or ``study_uid``) gave the image with a given sha256, for the
    last few images `audit` and `ground_image` read. Only the name of the image is kept, never pixels,
    and only short names (paths, URLs, study UIDs); an image is handed back only to a caller that
    already holds its sha256, and only after it was read again and its sha256 checked."""

    def __init__(self, size: int = MAX_REMEMBERED) -> None:
        self._size = size
        self._sources: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, sha256: str, arguments: Mapping[str, Any]) -> None:
        source = {k: v for k in ("image", "study_uid") if isinstance(v := arguments.get(k), str)}
        if len(source) != 1 or len(next(iter(source.values()))) > MAX_SOURCE_CHARS:
            return
        with self._lock:
            self._sources[sha256] = source
            self._sources.move_to_end(sha256)
            while len(self._sources) > self._size:
                self._sources.popitem(last=False)

    def recall(self, sha256: str) -> dict[str, str] | None:
        with self._lock:
            return self._sources.get(sha256)


def result_sha256(tool: str, result: HandlerResult) -> str | None:
    """The image sha256 a successful `audit` or `ground_image` result records, if any."""
    wire = result.model_dump(by_alias=True) if isinstance(result, BaseModel) else result or {}
    content = wire.get("structuredContent")
    if wire.get("isError") or not isinstance(content, dict):
        return None
    grounding = content.get("grounding") if tool == "audit" else content
    image = grounding.get("image") if isinstance(grounding, dict) else None
    sha = image.get("sha256") if isinstance(image, dict) else None
    return sha if isinstance(sha, str) else None


def load_preview(
    engine: Auditor,
    sha256: str,
    source: Mapping[str, str | None],
    max_side: int,
    progress: Progress,
) -> bytes:
    """Read the named image again, check it is the one the result was made from, and downscale it."""
    from auditor.dicomweb import image_or_study

    loaded = image_or_study(engine, source.get("image"), source.get("study_uid"), progress)
    if loaded.info.sha256 != sha256:
        raise ValueError(
            f"the image named is not the one the result was made from (sha256 {sha256[:12]}..., this one "
            f"{loaded.info.sha256[:12]}...): its boxes would be drawn on the wrong picture"
        )
    return preview_jpeg(loaded.image, max_side)


# ---- the extension -------------------------------------------------------------------------------------


class ViewerApps(Apps):
    """The SDK's MCP Apps extension, which also notes which image argument gave which sha256."""

    def __init__(self) -> None:
        super().__init__()
        self.sources = SourceMemory()

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        result = await call_next(ctx)
        if params.name in SOURCE_TOOLS:
            sha = result_sha256(params.name, result)
            if sha is not None:
                self.sources.remember(sha, params.arguments or {})
        return result


def viewer_extension(engine: Auditor, run: Runner) -> ViewerApps:
    """The Apps extension with the viewer resource and its app-only preview tool. The server binds
    `audit`, `compare` and `ground_image` to the viewer with ``apps.tool(resource_uri=VIEWER_URI)``."""
    apps = ViewerApps()
    apps.add_html_resource(
        VIEWER_URI,
        viewer_html(),
        name="audit_viewer",
        title="CXR audit viewer",
        description="The interactive viewer for audit, compare and ground_image results (MCP Apps).",
        csp=ResourceCsp(),
        prefers_border=True,
    )

    @apps.tool(
        resource_uri=VIEWER_URI,
        visibility=["app"],
        name=PREVIEW_TOOL,
        title="Preview the image",
        description=text.PREVIEW_IMAGE,
        annotations=ToolAnnotations(
            title="Preview the image",
            open_world_hint=True,
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
        ),
        structured_output=False,
    )
    async def preview_image(
        ctx: Context,
        sha256: Sha256Arg,
        image: OptionalImageArg = None,
        study_uid: StudyUidArg = None,
        max_side: PreviewSideArg = PREVIEW_SIDE,
    ) -> Image:
        source: Mapping[str, str | None] = {"image": image, "study_uid": study_uid}
        if image is None and study_uid is None:
            remembered = apps.sources.recall(sha256)
            if remembered is None:
                raise ToolError(
                    "this server has not read an image with that sha256 lately: pass `image` or "
                    "`study_uid` as given to audit or ground_image"
                )
            source = remembered
        data = await run(ctx, lambda p: load_preview(engine, sha256, source, max_side, p), steps=1)
        return Image(data=data, format="jpeg")

    return apps
