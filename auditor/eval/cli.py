"""`cxr-auditor eval ...`: the evaluation runners' command line.

- ``eval reader``: a draft reader on an Open-i style report CSV.
- ``eval grounding``: an image grounder (hf, http, replay; oracle as a self-check) against gold boxes.
- ``eval audit``: synthetic drafts through a reader and the judge, grounded by a model, a replay file
  or the gold itself (``oracle``).
- ``eval compare``: two finished runs side by side, with counts, exact intervals and paired tests.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.cli_common import EXIT_INTERRUPTED, CliError, emit

if TYPE_CHECKING:
    from auditor.config import Settings
    from auditor.eval.grounders import ItemGrounder
    from auditor.eval.items import EvalItem
    from auditor.eval.runs import Command, RunPlan


def cmd_eval_reader(args: argparse.Namespace) -> int:
    from auditor.eval.reader_eval import evaluate_reader, write_run

    kind, _, path = args.dataset.partition(":")
    if kind != "openi" or not path:
        raise CliError(f"--dataset {args.dataset}: expected openi:PATH")
    if not Path(path).is_file():
        raise CliError(f"{path}: no such file")
    try:
        result = evaluate_reader(path, reader=args.reader, command_line=_command_line(args, "reader"))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.out:
        write_run(result, Path(args.out))
    emit(result)
    return 0


def _settings(args: argparse.Namespace, grounder: str | None) -> Settings:
    """The same flags as `serve` and `audit-batch` (one definition in ``auditor.cli_flags``); the
    oracle is no backend, so it sets no grounder."""
    from auditor.cli_flags import settings_from

    return settings_from(args, {"grounder": grounder})


def _plan(args: argparse.Namespace, command: Command) -> RunPlan:
    """Datasets, grounder, reader and settings from the flags; every bad value is one CliError line."""
    from auditor.eval.datasets import load_all, parse_spec
    from auditor.eval.runs import RunPlan, generation_settings

    try:
        specs = [parse_spec(d) for d in args.dataset]
        if command == "grounding" and any(s.kind == "openi" for s in specs):
            raise ValueError("openi datasets carry no images or boxes: use `eval reader` or `eval audit`")
        for flag in ("images", "sizes"):
            value = getattr(args, flag)
            if value is not None and not Path(value).exists():
                raise ValueError(f"--{flag} {value}: not found")
        images = Path(args.images) if args.images else None
        sizes = Path(args.sizes) if args.sizes else None
        items, loaded = load_all(specs, sizes=sizes, images=images)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    settings, grounder = _grounder(args, items, images)
    plan = RunPlan(
        command=command,
        items=items,
        datasets=loaded,
        grounder=grounder,
        out=Path(args.out),
        images=images,
        sizes=sizes,
        progress=args.progress,
        command_line=_command_line(args, command),
    )
    reader = args.reader if command == "audit" else None
    try:
        plan.settings = generation_settings(settings, args.grounder, reader)
    except OSError as exc:  # a prompt file that went away since the settings were checked
        raise CliError(f"cannot read a prompt file: {exc}") from None
    if command == "audit":
        plan.seed = args.seed
        _attach_reader(plan, settings, args.reader)
    return plan


def _grounder(
    args: argparse.Namespace, items: Sequence[EvalItem], images: Path | None
) -> tuple[Settings, ItemGrounder]:
    """The oracle (gold boxes, no images), or a factory grounder fed each item's image."""
    from auditor.backends import BackendError
    from auditor.backends.factory import make_grounder
    from auditor.config import ConfigError
    from auditor.eval.grounders import ImageItemGrounder, OracleItemGrounder, replay_extra

    oracle = args.grounder == "oracle"
    if not oracle and images is None:
        raise CliError(
            f"--grounder {args.grounder} reads the images: give --images DIR (or use --grounder oracle)"
        )
    try:
        settings = _settings(args, None if oracle else args.grounder)
        if oracle:
            return settings, OracleItemGrounder(items)
        extra: dict[str, object] = {
            "box_format": f"{settings.box_order}@{settings.box_scale:g}",
            **replay_extra(settings.replay),
        }
        grounder = ImageItemGrounder(make_grounder(settings), images, extra)
        if settings.grounder_revision and not grounder.describe().get("revision"):
            grounder.extra["revision"] = settings.grounder_revision
        return settings, grounder
    except (ConfigError, BackendError, ValueError) as exc:
        raise CliError(f"--grounder {args.grounder}: {exc}") from None


def _command_line(args: argparse.Namespace, runner: str) -> str:
    """The command as a shell line, rebuilt from the parsed flags (main() may be called in-process)."""
    words = ["cxr-auditor", "eval", runner]
    for key, value in vars(args).items():
        if key in {"func", "command", "eval_command"} or value in (None, False):
            continue
        flag = "--" + key.replace("_", "-")
        for v in value if isinstance(value, list) else [value]:
            words += [flag] if v is True else [flag, str(v)]
    return shlex.join(words)


def _attach_reader(plan: RunPlan, settings: Settings, kind: str) -> None:
    """The configured reader itself, called directly: not `Auditor.read`, whose fallback to the rule
    reader would score the rule reader under this reader's name. Its failures are the item's."""
    from auditor.backends import BackendError
    from auditor.backends.factory import make_reader

    try:
        reader = make_reader(settings, kind)
    except (BackendError, KeyError) as exc:
        raise CliError(f"--reader {kind}: {exc}") from None
    state = reader.state()
    plan.reader = reader.read
    plan.reader_info = {
        "backend": state.backend,
        "model_id": state.model_id,
        "revision": state.detail.get("revision") or (settings.reader_revision if kind != "rules" else None),
        "prompt_version": state.detail.get("prompt_version"),
    }


def _execute(plan: RunPlan) -> int:
    from auditor.eval.runs import execute
    from auditor.eval.runstore import RunError

    try:
        metrics = execute(plan)
    except RunError as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        print(
            f"cxr-auditor: interrupted; finished items are saved in {plan.out}/items.jsonl. "
            "Run the same command again to continue.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    summary = {k: metrics[k] for k in ("command", "integrity", "headline")}
    if "flags" in metrics:
        summary["flags"] = {
            k: {x: v[x] for x in ("precision", "recall", "n")} for k, v in metrics["flags"].items()
        }
    summary["out"] = str(plan.out)
    emit(summary)
    return 0


def cmd_eval_grounding(args: argparse.Namespace) -> int:
    return _execute(_plan(args, "grounding"))


def cmd_eval_audit(args: argparse.Namespace) -> int:
    return _execute(_plan(args, "audit"))


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from auditor.eval.compare_runs import compare_markdown, load_run
    from auditor.eval.runstore import RunError

    try:
        text = compare_markdown(load_run(Path(args.run_a)), load_run(Path(args.run_b)))
    except (RunError, KeyError, ValueError) as exc:
        raise CliError(f"cannot compare {args.run_a} and {args.run_b}: {exc}") from None
    if args.out:
        from auditor.eval.runstore import write_text_atomic

        write_text_atomic(Path(args.out), text)
    print(text, end="")
    return 0


def _run_flags(p: argparse.ArgumentParser, grounders: list[str], default: str | None) -> None:
    from auditor.cli_flags import add_grounder_flags, add_model_flags, add_progress_flag

    p.add_argument(
        "--dataset",
        action="append",
        required=True,
        metavar="KIND:PATH",
        help="nih-bbox:CSV, chestx-det:JSON, vindr:CSV or openi:CSV; repeat to join datasets",
    )
    p.add_argument("--images", help="folder holding the dataset's images (model and replay grounders)")
    p.add_argument("--sizes", help="VinDr: CSV image_id,width,height of the ORIGINAL images")
    p.add_argument("--out", required=True, help="run folder: run.json, items.jsonl, metrics.json, report.md")
    add_progress_flag(p)
    add_model_flags(p)
    add_grounder_flags(p, grounders, default, required=default is None)


def register(sub: Any) -> None:
    """Add the `eval` command and its runners to the top-level subparsers."""
    p = sub.add_parser("eval", help="evaluation runners")
    ev = p.add_subparsers(dest="eval_command", required=True, metavar="RUNNER")
    r = ev.add_parser("reader", help="score a draft reader on an Open-i style report CSV")
    r.add_argument("--dataset", required=True, help="openi:PATH")
    r.add_argument("--reader", default="rules", help="rules (default)")
    r.add_argument("--out", help="write DIR/metrics.json and DIR/report.md")
    r.set_defaults(func=cmd_eval_reader)

    g = ev.add_parser("grounding", help="score an image grounder against a dataset's gold boxes")
    _run_flags(g, ["replay", "hf", "http", "oracle"], None)
    g.set_defaults(func=cmd_eval_grounding)

    a = ev.add_parser("audit", help="synthetic drafts from gold boxes through a reader and the judge")
    _run_flags(a, ["oracle", "replay", "hf", "http"], "oracle")
    from auditor.cli_flags import add_reader_flags

    add_reader_flags(a, ["rules", "hf", "http"], "rules")
    a.add_argument("--seed", type=int, default=0, help="synthetic draft seed (default 0)")
    a.set_defaults(func=cmd_eval_audit)

    c = ev.add_parser("compare", help="two run folders side by side (Markdown), with exact intervals")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--out", help="also write the Markdown here")
    c.set_defaults(func=cmd_eval_compare)
