"""`cxr-auditor train ...`: corpus, curate, sft, merge, verify-merge.

Only argparse happens at import: torch, transformers and peft load inside the command that needs them,
so registering these commands costs `serve` and the other commands nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

EXIT_CHECK_FAILED: Final = 1
RECORDS: Final = "records.jsonl"
MANIFEST: Final = "manifest.json"


def _say(message: str) -> None:
    print(f"cxr-auditor: train: {message}", file=sys.stderr, flush=True)


def _write_json(path: Path, data: Any) -> None:
    from auditor.runfolder import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def cmd_corpus(args: argparse.Namespace) -> int:
    from auditor.cli_common import CliError, cli_settings, emit
    from auditor.eval.datasets import parse_spec
    from auditor.prompts import grounding_prompt
    from auditor.recovery import BoxFormat
    from auditor.train.corpus import build_corpus
    from auditor.train.records import write_records

    settings = cli_settings(args)
    images = Path(args.images)
    if not images.is_dir():
        raise CliError(f"--images {images}: not a folder")
    fmt = BoxFormat(order=settings.box_order, scale=settings.box_scale)
    try:
        specs = [parse_spec(d) for d in args.dataset]
        bad = [s for s in specs if s.kind == "openi"]
        if bad:
            raise ValueError(f"{bad[0]}: report labels have no boxes; a grounder corpus needs box datasets")
        prompt = grounding_prompt(fmt, settings.grounder_prompt)
        build, manifest = build_corpus(
            specs, images, fmt, prompt, sizes=Path(args.sizes) if args.sizes else None
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not build.records:
        raise CliError(f"no usable records (excluded: {dict(build.excluded)}); is --images the right folder?")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / RECORDS, build.records)
    _write_json(out / MANIFEST, manifest)
    if manifest["non_commercial"]:
        _say("this corpus includes VinDr-CXR: non-commercial research only (see manifest.json licences)")
    emit({k: manifest[k] for k in ("items", "records", "excluded", "images_per_label", "box_format")})
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from auditor.cli_common import CliError, emit
    from auditor.labels import Label
    from auditor.train.curate import CurationConfig, curate
    from auditor.train.heldout import EVAL_KIND, as_chestx_det
    from auditor.train.records import read_records, write_records

    corpus = Path(args.corpus)
    records_path = corpus / RECORDS if corpus.is_dir() else corpus
    manifest_path = records_path.with_name(MANIFEST)
    if not records_path.is_file():
        raise CliError(f"--corpus {corpus}: no {RECORDS} (make one with `cxr-auditor train corpus`)")
    try:
        keep_all = frozenset(Label(name) for name in args.keep_all)
        config = CurationConfig(
            merge_iou=args.merge_iou,
            cross_label_iou=args.cross_label_iou,
            normal_ratio=None if args.normal_ratio < 0 else args.normal_ratio,
            max_per_label=args.max_per_label,
            keep_all=keep_all,
            heldout=args.heldout,
            seed=args.seed,
        )
        records = list(read_records(records_path))
        curated = curate(records, config)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    images = Path(manifest.get("images") or ".")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "train.jsonl", curated.train)
    write_records(out / "heldout.jsonl", curated.heldout)
    heldout_eval = out / f"heldout.{EVAL_KIND}.json"
    _write_json(heldout_eval, as_chestx_det(curated.heldout, images))
    report = curated.report.as_json()
    _write_json(out / "curation.json", report)
    _write_json(
        out / MANIFEST, {**manifest, "curation": {k: report[k] for k in ("config", "boxes", "images")}}
    )
    summary = {k: report[k] for k in ("images", "labels_kept")}
    summary["boxes"] = {k: v for k, v in report["boxes"].items() if k != "per_label"}
    summary["eval_dataset"] = f"{EVAL_KIND}:{heldout_eval}"
    summary["images_folder"] = str(images)
    emit(summary)
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from auditor.cli_common import CliError, emit
    from auditor.train.sft import SftConfig, TrainError, train

    config = SftConfig(
        base=args.base,
        train=Path(args.train),
        out=Path(args.out),
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        lr=args.lr,
        epochs=args.epochs,
        max_steps=args.max_steps,
        grad_accum=args.grad_accum,
        warmup_steps=args.warmup_steps,
        schedule=args.schedule,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        seed=args.seed,
        quantize=args.quantize,
        device=args.device,
        dtype=args.dtype,
        gradient_checkpointing=args.gradient_checkpointing,
        revision=args.revision,
        log_every=args.log_every,
    )
    if not config.train.is_file():
        raise CliError(f"--train {config.train}: no such file (the curated train.jsonl)")
    try:
        result = train(config, resume=args.resume, say=_say)
    except (TrainError, ValueError) as exc:
        raise CliError(str(exc)) from None
    emit(
        {
            "adapter": str(result.adapter),
            "steps": result.steps,
            "examples": result.examples,
            "resumed_from": result.resumed_from,
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "tokens_per_s": round(result.tokens_per_s(), 2),
            "device": result.device,
            "quantized_4bit": result.quantized,
            "peak_memory_bytes": result.peak_memory_bytes,
        }
    )
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from auditor.cli_common import CliError, emit
    from auditor.train.merge import MergeError, merge
    from auditor.train.sft import TrainError

    try:
        check = merge(
            args.base, Path(args.adapter), Path(args.out), dtype=args.dtype, revision=args.revision, say=_say
        )
    except TrainError as exc:
        raise CliError(str(exc)) from None
    except MergeError as exc:
        raise CliError(str(exc), EXIT_CHECK_FAILED) from None
    summary = {k: v for k, v in check.as_json().items() if k != "modules"}
    emit({"merged": args.out, **summary, "use": f"CXR_AUDITOR_GROUNDER_MODEL={args.out}"})
    return 0


def cmd_verify_merge(args: argparse.Namespace) -> int:
    from auditor.cli_common import CliError, emit
    from auditor.train.merge import verify_merge
    from auditor.train.sft import TrainError

    try:
        check = verify_merge(
            args.base, Path(args.adapter), Path(args.merged), dtype=args.dtype, revision=args.revision
        )
    except TrainError as exc:
        raise CliError(str(exc)) from None
    emit({k: v for k, v in check.as_json().items() if k != "modules"})
    if not check.ok:
        _say(f"{args.merged}: merge check FAILED: " + "; ".join(check.problems()))
        return EXIT_CHECK_FAILED
    return 0


def _corpus_parser(tr: Any) -> None:
    p = tr.add_parser("corpus", help="box datasets -> chat-format SFT records and a manifest")
    p.add_argument(
        "--dataset",
        action="append",
        required=True,
        metavar="KIND:PATH",
        help="nih-bbox:CSV, chestx-det:JSON or vindr:CSV; repeat to join datasets",
    )
    p.add_argument(
        "--images", required=True, help="folder holding the datasets' images (referenced, not copied)"
    )
    p.add_argument("--sizes", help="VinDr: CSV image_id,width,height of the ORIGINAL images")
    p.add_argument("--out", required=True, help="corpus folder: records.jsonl and manifest.json")
    p.add_argument("--config", help="TOML file with the same keys as the CXR_AUDITOR_* variables")
    p.add_argument("--box-order", choices=["yxyx", "xyxy"], help="the model's box order (default yxyx)")
    p.add_argument("--box-scale", type=float, help="the model's box scale: 1 (default) or 1000")
    p.set_defaults(func=cmd_corpus)


def _curate_parser(tr: Any) -> None:
    p = tr.add_parser("curate", help="merge duplicate boxes, resolve cross-label overlaps, balance, split")
    p.add_argument("--corpus", required=True, help="a corpus folder (or its records.jsonl)")
    p.add_argument(
        "--out",
        required=True,
        help="folder: train.jsonl, heldout.jsonl, heldout.chestx-det.json, curation.json",
    )
    p.add_argument(
        "--merge-iou", type=float, default=0.5, help="same-label boxes chained at this IoU merge (0.5)"
    )
    p.add_argument(
        "--cross-label-iou",
        type=float,
        default=0.6,
        help="a box overlapping a more specific label's box this much is dropped (0.6)",
    )
    p.add_argument(
        "--normal-ratio",
        type=float,
        default=1.0,
        help="normal-only images kept per positive image (1.0; negative keeps all)",
    )
    p.add_argument("--max-per-label", type=int, help="cap positive images per label (default: no cap)")
    p.add_argument(
        "--keep-all",
        nargs="*",
        default=["pneumothorax"],
        metavar="LABEL",
        help="images with these labels are never dropped (default: pneumothorax)",
    )
    p.add_argument(
        "--heldout", type=float, default=0.1, help="fraction held out, per label-set stratum (0.1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (0)")
    p.set_defaults(func=cmd_curate)


def _sft_parser(tr: Any) -> None:
    p = tr.add_parser("sft", help="LoRA fine-tune (QLoRA on a GPU with bitsandbytes), resumable")
    p.add_argument(
        "--base", required=True, help="hub id or folder of the base (e.g. google/medgemma-1.5-4b-it)"
    )
    p.add_argument("--revision", help="hub revision of the base")
    p.add_argument("--train", required=True, help="curated train.jsonl")
    p.add_argument(
        "--out", required=True, help="run folder: adapter/, checkpoints/, train_log.jsonl, run.json"
    )
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (16)")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (16)")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout (0.05)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate (2e-4)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data (1)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--grad-accum", type=int, default=1, help="examples per optimizer step (1)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps (0)")
    p.add_argument("--schedule", choices=["linear", "constant"], default="linear", help="lr after warm-up")
    p.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps (100)")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="newest checkpoints kept (2)")
    p.add_argument("--seed", type=int, default=0, help="seed of LoRA init, data order and dropout (0)")
    p.add_argument(
        "--quantize",
        choices=["auto", "none", "4bit"],
        default="auto",
        help="4-bit NF4 base (QLoRA): auto = where bitsandbytes and a GPU are present",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float32"],
        default="auto",
        help="auto: bfloat16 on a GPU, float32 on CPU",
    )
    p.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    p.add_argument("--log-every", type=int, default=10, help="a progress line every N steps (10)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.set_defaults(func=cmd_sft)


def _merge_parsers(tr: Any) -> None:
    p = tr.add_parser("merge", help="merge the adapter into a bf16 copy of the base, verified from disk")
    p.add_argument("--base", required=True, help="the base the adapter was trained on")
    p.add_argument("--revision", help="hub revision of the base")
    p.add_argument("--adapter", required=True, help="the adapter folder (RUN/adapter)")
    p.add_argument("--out", required=True, help="new folder for the merged checkpoint")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="(bfloat16)")
    p.set_defaults(func=cmd_merge)

    v = tr.add_parser("verify-merge", help="check that a folder is base + adapter (exit 1 if it is not)")
    v.add_argument("--base", required=True)
    v.add_argument("--revision", help="hub revision of the base")
    v.add_argument("--adapter", required=True)
    v.add_argument("--merged", required=True)
    v.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    v.set_defaults(func=cmd_verify_merge)


def register(sub: Any) -> None:
    """Add `train` and its steps to the top-level subparsers."""
    p = sub.add_parser("train", help="fine-tune a grounder: corpus, curate, sft, merge (the train extra)")
    tr = p.add_subparsers(dest="train_command", required=True, metavar="STEP")
    _corpus_parser(tr)
    _curate_parser(tr)
    _sft_parser(tr)
    _merge_parsers(tr)
