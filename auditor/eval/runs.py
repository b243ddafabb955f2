"""Run an evaluation end to end: configuration and its hash, the resumable item loop, scoring, files.

Writes ``DIR/run.json`` at the start, ``DIR/items.jsonl`` as items finish, then ``DIR/metrics.json`` and
``DIR/report.md``. Scoring reads the records back from ``items.jsonl``, so an interrupted run that is
resumed is scored exactly like one that never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from auditor.eval.datasets import LoadedDataset, sha256_file
from auditor.eval.grounders import ItemGrounder
from auditor.eval.items import EvalItem
from auditor.eval.provenance import code_version, config_hash, environment
from auditor.eval.records import ItemRecord
from auditor.eval.report import report_markdown
from auditor.eval.runstore import RunError, RunStore, ids_in_order, write_json, write_text_atomic
from auditor.eval.score import score
from auditor.eval.steps import Reader, audit_step, ground_step
from auditor.eval.synthetic import SYNTHETIC_VERSION
from auditor.runfolder import Progress

if TYPE_CHECKING:
    from auditor.config import Settings

Command = Literal["grounding", "audit"]

# The settings that change what a backend generates, per backend kind. Engine plumbing (timeouts,
# retries, concurrency) changes no output, and secrets (api_key, http_token) are never recorded.
_GROUNDER_SETTINGS: Final[dict[str, tuple[str, ...]]] = {
    "hf": (
        "grounder_model",
        "grounder_revision",
        "grounder_prompt",
        "grounder_max_new_tokens",
        "box_order",
        "box_scale",
        "device",
        "dtype",
    ),
    "http": (
        "grounder_url",
        "grounder_model",
        "grounder_api_model",
        "grounder_revision",
        "grounder_prompt",
        "grounder_max_new_tokens",
        "box_order",
        "box_scale",
    ),
    "replay": ("box_order", "box_scale"),
}
_READER_SETTINGS: Final[dict[str, tuple[str, ...]]] = {
    "hf": (
        "reader_model",
        "reader_revision",
        "reader_prompt",
        "reader_max_new_tokens",
        "reader_reasoning",
        "reader_reasoning_budget",
        "device",
        "dtype",
    ),
    "http": (
        "reader_url",
        "reader_model",
        "reader_api_model",
        "reader_revision",
        "reader_prompt",
        "reader_max_new_tokens",
        "reader_reasoning",
        "reader_reasoning_budget",
    ),
}
SECRET_SETTINGS: Final = frozenset({"api_key", "http_token"})
_PROMPT_FILES: Final = frozenset({"grounder_prompt", "reader_prompt"})


@dataclass
class RunPlan:
    """Everything one run needs; ``reader`` and ``seed`` only for audit runs."""

    command: Command
    items: Sequence[EvalItem]
    datasets: Sequence[LoadedDataset]
    grounder: ItemGrounder
    out: Path
    reader: Reader | None = None
    reader_info: dict[str, object] = field(default_factory=dict)
    seed: int = 0
    images: Path | None = None
    sizes: Path | None = None
    progress: bool | None = None
    command_line: str = ""
    settings: dict[str, object] = field(default_factory=dict)


def generation_settings(settings: Settings, grounder: str, reader: str | None = None) -> dict[str, object]:
    """The settings that shape the generations of this grounder and reader kind (none for the oracle
    and the rule reader), for the run's configuration hash. A prompt file is recorded by its sha256
    (key ``..._prompt_sha256``), so editing the file is a different configuration."""
    keys = set(_GROUNDER_SETTINGS.get(grounder, ())) | set(_READER_SETTINGS.get(reader or "", ()))
    out: dict[str, object] = {}
    for key in sorted(keys - SECRET_SETTINGS):
        value = getattr(settings, key)
        if key in _PROMPT_FILES:
            out[f"{key}_sha256"] = sha256_file(value) if value is not None else None
        else:
            out[key] = str(value) if isinstance(value, Path) else value
    return out


def run_config(plan: RunPlan) -> dict[str, Any]:
    """What determines the records: a rerun into the same folder must match it exactly."""
    code = code_version()
    config: dict[str, Any] = {
        "command": plan.command,
        "datasets": [{"kind": d.spec.kind, "sha256": d.sha256} for d in plan.datasets],
        "sizes_sha256": sha256_file(plan.sizes) if plan.sizes is not None else None,
        "images": str(plan.images.resolve()) if plan.images is not None else None,
        "grounder": plan.grounder.describe(),
        "settings": dict(plan.settings),
        "code": {"auditor": code["auditor"], "git_commit": code["git_commit"]},
    }
    if plan.command == "audit":
        config.update(reader=plan.reader_info, seed=plan.seed, synthetic_version=SYNTHETIC_VERSION)
    return config


def _step(plan: RunPlan) -> Callable[[EvalItem], ItemRecord]:
    if plan.command == "grounding":
        return lambda item: ground_step(item, plan.grounder)
    read = plan.reader
    if read is None:
        raise ValueError("an audit run needs a reader")
    return lambda item: audit_step(item, plan.seed, plan.grounder, read)


def execute(plan: RunPlan) -> dict[str, Any]:
    """Run (or resume) and score. KeyboardInterrupt propagates after the finished items are saved."""
    config = run_config(plan)
    code = code_version()
    provenance = {
        "code": code,
        "environment": environment(),
        "datasets": [
            {"kind": d.spec.kind, "path": str(d.spec.path), "sha256": d.sha256} for d in plan.datasets
        ],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command_line": plan.command_line,
    }
    store = RunStore(plan.out)
    done = store.start(config, provenance)
    try:  # the folder stays locked until metrics.json and report.md are written
        metrics = _run_and_score(plan, store, done, config, provenance)
    finally:
        store.close()
    return metrics


def _run_and_score(
    plan: RunPlan,
    store: RunStore,
    done: dict[str, ItemRecord],
    config: dict[str, Any],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """The item loop, then scoring from the records on disk and the two result files."""
    code = code_version()
    ids = {i.id for i in plan.items}
    stray = sorted(set(done) - ids)
    if stray:
        raise RunError(f"{plan.out}: records for ids not in the dataset, e.g. {stray[:3]}")
    step = _step(plan)
    todo = [i for i in plan.items if i.id not in done]
    bar = Progress(len(plan.items), len(plan.items) - len(todo), label="eval", enabled=plan.progress)
    t0 = time.perf_counter()
    try:
        for item in todo:
            store.append(step(item))
            bar.update()
    finally:
        bar.close()
        store.close_items()
    seconds = time.perf_counter() - t0
    records = ids_in_order(store.read_all(), [i.id for i in plan.items])
    metrics: dict[str, Any] = {"command": plan.command}
    metrics.update(score(plan.items, records, audit=plan.command == "audit"))
    metrics["run"] = {
        "command_line": plan.command_line,
        "config": config,
        "config_sha256": config_hash(config),
        "git_dirty": code["git_dirty"],
        "resumed_items": len(done),
        "new_items": len(todo),
        "seconds": round(seconds, 3),
        "items_per_second": round(len(todo) / seconds, 1) if seconds > 0 and todo else None,
        "notes": store.notes,
    }
    metrics["datasets"] = [d.describe() for d in plan.datasets]
    metrics["provenance"] = provenance
    write_json(plan.out / "metrics.json", metrics)
    write_text_atomic(plan.out / "report.md", report_markdown(metrics))
    return metrics
