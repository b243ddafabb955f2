"""The MCP server: five typed tools, four resources and one prompt over one resident Auditor.

The pipeline is synchronous (models, PIL, regexes); each call runs in a worker thread so the event
loop keeps answering other clients, and progress from the thread is relayed as MCP progress
notifications. Bad input and backend failures become tool errors that name the problem; the server
keeps serving the next call.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.apps import Apps
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, ToolAnnotations
from pydantic import Field, ValidationError

import auditor
from auditor.compare import DECISION_COLUMNS, decision_table
from auditor.dicomweb import find_study_images as find_images
from auditor.dicomweb import image_or_study
from auditor.errors import describe
from auditor.labels import LABEL_ORDER, URGENT_LABELS, synonym_table
from auditor.pipeline import Auditor
from auditor.schema import AuditReport, Comparison, DraftReading, Grounding, Policy
from auditor.study_select import StudyImages
from auditor.tool_io import (
    MAX_DRAFT_CHARS,
    AuditDraftArg,
    ContextArg,
    DraftArg,
    EditableGrounding,
    FindStudyUidArg,
    GroundingArg,
    OptionalImageArg,
    PolicyArg,
    ReadingArg,
    StudyUidArg,
    describe_invalid,
    tool_schemas,
)
from mcp_server import client_log, viewer
from mcp_server import descriptions as text

T = TypeVar("T")

READ_ONLY = dict(read_only_hint=True, destructive_hint=False, idempotent_hint=True)


def _error_message(exc: Exception) -> str:
    """The one line a client shows, in the words every surface uses (`auditor.errors.describe`): only
    our own errors carry their text, so an unexpected error can never echo input data back."""
    described = describe(exc)
    return described.line if described.ours else f"{described.message}; the server is still serving"


_WORKER_THREADS = 4
# A few worker threads for all tool calls: models are serialised anyway, and each extra thread costs
# memory (decoded images, allocator arenas) without adding throughput on a small machine. A plain
# thread-safe semaphore, not an event-loop primitive: the thread that holds a slot releases it itself
# when it really ends, even after the call that started it was cancelled or its event loop is gone.
_SLOTS = threading.BoundedSemaphore(_WORKER_THREADS)
_SLOT_POLL_S = 0.005


async def _run(ctx: Context | None, work: Callable[[Callable[[str], None]], T], steps: int) -> T:
    """Run sync work in a thread; its progress callback becomes MCP progress notifications."""
    done = 0

    def progress(message: str) -> None:
        nonlocal done
        done += 1
        if ctx is not None:
            # progress is best effort: a client that sent no progress token simply gets none
            with contextlib.suppress(Exception):
                anyio.from_thread.run(ctx.report_progress, min(done, steps), steps, message)

    relay = client_log.relay_to(ctx)  # what the work logs (loading, generation, fallbacks) goes here

    # The slot is held by the thread, not by this call: a cancelled call returns at once, but its thread
    # keeps the slot until it really ends, so cancelling call after call cannot stack up threads.
    while not _SLOTS.acquire(blocking=False):
        await anyio.sleep(_SLOT_POLL_S)
    state = {"phase": "pending"}  # pending -> running (the thread owns the slot) | dropped (this call does)
    guard = threading.Lock()

    def claim(phase: str) -> bool:
        with guard:
            if state["phase"] != "pending":
                return False
            state["phase"] = phase
            return True

    def job() -> T:
        if not claim("running"):  # cancelled before the thread started: the slot was given back
            raise anyio.get_cancelled_exc_class()
        try:
            with client_log.routed(relay):
                return work(progress)
        finally:
            _SLOTS.release()

    try:
        return await anyio.to_thread.run_sync(job, abandon_on_cancel=True)
    except BaseException as exc:
        if claim("dropped"):  # the thread never started: the slot is still this call's to give back
            _SLOTS.release()
        if isinstance(exc, Exception) and not isinstance(exc, ToolError):
            raise ToolError(_error_message(exc)) from exc
        raise


class AuditorServer(MCPServer):
    """An MCPServer whose argument errors are one line per problem (where, and what is wrong), as the
    CLI gives them, instead of pydantic's dump with the rejected values and documentation links."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and str(exc).startswith("Error executing tool"):
                raise ToolError(f"Error executing tool {name}: {describe_invalid(cause)}") from cause
            raise

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context | None = None
    ) -> Any:
        """A missing or bad prompt argument is an invalid-params error that says which, not an
        'Internal server error'."""
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:
            raise MCPError(INVALID_PARAMS, f"prompt {name!r}: {exc}") from exc


def build_server(engine: Auditor) -> MCPServer:
    """Register everything on a fresh MCPServer bound to one Auditor (so models stay resident)."""
    apps = viewer.viewer_extension(engine, _run)
    _add_viewer_tools(apps, engine)  # before the server: it applies the extension when it is made
    server = AuditorServer(
        "cxr-draft-auditor",
        title="CXR Draft Auditor",
        version=auditor.__version__,
        instructions=text.INSTRUCTIONS,
        extensions=[apps],
        log_level="WARNING",  # the SDK's INFO lines repeat every tool error, image paths included
    )
    _add_tools(server, engine)
    _add_resources(server, engine)
    _add_prompt(server)
    client_log.serve_logging(server)
    return server


def _add_viewer_tools(apps: Apps, engine: Auditor) -> None:
    """The tools whose results the audit viewer shows, in hosts that render MCP Apps: the same tools
    and results everywhere, with ``_meta.ui.resourceUri`` pointing at the viewer."""

    @apps.tool(
        resource_uri=viewer.VIEWER_URI,
        title="Ground the image",
        description=text.GROUND_IMAGE,
        annotations=ToolAnnotations(title="Ground the image", open_world_hint=True, **READ_ONLY),
    )
    async def ground_image(
        ctx: Context, image: OptionalImageArg = None, study_uid: StudyUidArg = None
    ) -> Grounding:
        return await _run(
            ctx, lambda p: engine.ground_loaded(image_or_study(engine, image, study_uid, p), p), steps=2
        )

    @apps.tool(
        resource_uri=viewer.VIEWER_URI,
        title="Compare image and draft",
        description=text.COMPARE,
        annotations=ToolAnnotations(title="Compare image and draft", open_world_hint=False, **READ_ONLY),
    )
    async def compare(  # async: the judge takes microseconds, so it runs on the loop, not in a thread
        grounding: GroundingArg,
        reading: ReadingArg = None,
        context: ContextArg = None,
        policy: PolicyArg = None,
    ) -> Comparison:
        return _with_edit_notes(
            engine, engine.compare(grounding, reading, context, policy), grounding, reading
        )

    @apps.tool(
        resource_uri=viewer.VIEWER_URI,
        title="Audit image and draft",
        description=text.AUDIT,
        annotations=ToolAnnotations(title="Audit image and draft", open_world_hint=True, **READ_ONLY),
    )
    async def audit(
        ctx: Context,
        image: OptionalImageArg = None,
        study_uid: StudyUidArg = None,
        draft: AuditDraftArg = "",
        context: ContextArg = None,
    ) -> AuditReport:
        return await _run(
            ctx,
            lambda p: engine.audit_loaded(image_or_study(engine, image, study_uid, p), draft, context, p),
            steps=4,
        )


def _add_tools(server: MCPServer, engine: Auditor) -> None:
    @server.tool(
        title="Read the draft",
        description=text.PARSE_DRAFT,
        annotations=ToolAnnotations(title="Read the draft", open_world_hint=False, **READ_ONLY),
    )
    async def parse_draft(draft: DraftArg, ctx: Context) -> DraftReading:
        if engine.reader_is_instant():  # the rule reader takes ~0.1 ms: a thread hop would cost more
            return engine.read(draft)
        return await _run(ctx, lambda p: engine.read(draft, p), steps=1)

    @server.tool(
        title="List a study's images",
        description=text.FIND_STUDY_IMAGES,
        annotations=ToolAnnotations(title="List a study's images", open_world_hint=True, **READ_ONLY),
    )
    async def find_study_images(study_uid: FindStudyUidArg, ctx: Context) -> StudyImages:
        return await _run(ctx, lambda p: find_images(engine.settings, study_uid), steps=1)

    @server.tool(
        title="Draw findings and flags",
        description=text.RENDER_FINDINGS,
        annotations=ToolAnnotations(title="Draw findings and flags", open_world_hint=True, **READ_ONLY),
        structured_output=False,
    )
    async def render_findings(
        ctx: Context,
        image: OptionalImageArg = None,
        study_uid: StudyUidArg = None,
        grounding: Annotated[
            EditableGrounding | None,
            Field(description="ground_image's result, if you have it (needed with a comparison)"),
        ] = None,
        comparison: Annotated[
            Comparison | None,
            Field(description="compare's result, if you have it; pass the grounding it was made from too"),
        ] = None,
        draft: Annotated[
            str | None,
            Field(
                max_length=MAX_DRAFT_CHARS,
                description="a draft to audit now, only when there is no comparison",
            ),
        ] = None,
        max_side: Annotated[int, Field(ge=256, le=2048, description="longest side of the picture")] = 1024,
    ) -> Image:
        rendered = await _run(
            ctx,
            lambda p: engine.render(
                functools.partial(image_or_study, engine, image, study_uid, p),
                grounding,
                comparison,
                draft,
                max_side=max_side,
                progress=p,
            ),
            steps=3,
        )
        return Image(data=rendered.data, format=rendered.mime_type.split("/")[1])


def _with_edit_notes(
    engine: Auditor, comparison: Comparison, grounding: Grounding | None, reading: DraftReading | None
) -> Comparison:
    """The comparison, with a note for each stage result a person built or edited before passing it."""
    from auditor.backends.factory import box_format
    from auditor.edits import grounding_edit_notes, reading_edit_notes

    notes = [*grounding_edit_notes(grounding, box_format(engine.settings)), *reading_edit_notes(reading)]
    if not notes:
        return comparison
    return comparison.model_copy(update={"notes": [*comparison.notes, *notes]})


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


def _add_resources(server: MCPServer, engine: Auditor) -> None:
    @server.resource(
        "cxr://vocabulary",
        name="vocabulary",
        description="The six labels, the URGENT set, and the synonym table (datasets and free text).",
        mime_type="application/json",
    )
    def vocabulary() -> str:
        return _json(
            {
                "labels": [lb.value for lb in LABEL_ORDER],
                "urgent": sorted(lb.value for lb in URGENT_LABELS),
                "synonyms": synonym_table(),
                "note": "null means dropped on purpose: outside the six labels on both sides",
            }
        )

    @server.resource(
        "cxr://policy",
        name="policy",
        description="The judge's default policy and its table.",
        mime_type="application/json",
    )
    def policy() -> str:
        return _json(
            {
                "policy": Policy().model_dump(mode="json"),
                "columns": list(DECISION_COLUMNS),
                "table": decision_table(),
                "disclaimer": text.DISCLAIMER,
            }
        )

    @server.resource(
        "cxr://models",
        name="models",
        description="The configured models: backend, model id, loaded or not, device.",
        mime_type="application/json",
    )
    def models() -> str:
        return _json([s.model_dump(mode="json") for s in engine.models()])

    @server.resource(
        "cxr://schemas",
        name="schemas",
        description="JSON Schema of every tool's input and output.",
        mime_type="application/json",
    )
    def schemas() -> str:
        return _json(tool_schemas())


def _add_prompt(server: MCPServer) -> None:
    @server.prompt(
        name="audit_draft",
        title="Audit a draft against its X-ray",
        description="Walks an assistant through ground_image, parse_draft, compare and render_findings, "
        "and how to present the flags (second look, never a diagnosis).",
    )
    def audit_draft(
        image: Annotated[
            str, Field(description="the X-ray: an absolute file path or a URL the server can read")
        ],
        draft: Annotated[
            str, Field(description="the draft impression, verbatim; leave out for an image-only pass")
        ] = "",
    ) -> str:
        if not image.strip():
            raise ValueError("give `image`: an absolute file path or a URL of the chest X-ray")
        shown = draft if draft.strip() else "(none given: an image-only pass, URGENT flags only)"
        return text.AUDIT_PROMPT.format(image=image, draft=shown, disclaimer=text.DISCLAIMER)
