"""The real-size audit through our own code: MedGemma-4B- and Nemotron-3-Nano-4B-shaped checkpoints
with random weights, loaded and run by ``auditor.backends.hf`` behind ``Auditor``, on a real NIH
radiograph.

Why random weights: no machine here reaches the Hugging Face hub. Load time, memory, prefill and
decode cost depend on the architecture and the token counts, not on the weight values, so a random
checkpoint of the published shape costs what the real one costs. Every generation is forced to its
full budget (``min_new_tokens`` in the checkpoint's ``generation_config.json``) so timings do not depend
on when random weights emit an end token. The text is garbage, and the run shows it flowing through
recovery into a visible FAILED outcome, the reader's fallback note and the kept model reading.

What it records (one JSON per device under bench/results/, or ``--out``): parameters per model,
device and versions, load time and memory per model (peak RSS; GPU max allocated), image load and
processor time, prefill and decode time and tokens per stage, the audit's wall time at batch 1 (p50,
p90 over ``--repeats``), worklist throughput with batched grounding (``--batch``), the settings of the
fast path, and the bandwidth floor: the bytes of weights each decoded token reads, divided by the
device's measured copy bandwidth, so that figures from different machines compare.

Run:
  python bench/real_size.py --models /tmp/cxr-real-size                   (builds the checkpoints once)
  python bench/real_size.py --models DIR --device cpu --ground-tokens 24 --reason-tokens 24 \\
      --answer-tokens 8 --repeats 1 --batch 0                              (the CPU proof, minutes)
  python bench/real_size.py --models DIR --smoke                           (tiny models: the script itself)
bench/device_run.sh runs it on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the checkpoints are local folders; never touch the hub

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.config import Settings  # noqa: E402
from auditor.testing.checkpoints import Size, force_length, parameter_count, write_grounder, write_reader  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NIH = ROOT / ".." / "shared" / "data" / "nih" / "images"
IMAGES = ["00001369_000.png", "00000004_000.png", "00002578_000.png", "00004296_000.png"]
DRAFT = "Mild cardiomegaly. No pneumothorax. Possible right upper lobe nodule. Small left pleural effusion."


# --- checkpoints ------------------------------------------------------------------------------------


def ensure_checkpoints(models: Path, size: Size, device: str, ground: int, reason: int) -> dict[str, Any]:
    """Write both checkpoints unless present; set the forced generation length to this run's budgets."""
    built: dict[str, Any] = {}
    for role, writer, force in (("grounder", write_grounder, ground), ("reader", write_reader, reason)):
        folder = models / role
        if not (folder / "config.json").is_file():
            started = time.perf_counter()
            writer(folder, size, device=device)
            built[f"{role}_build_s"] = round(time.perf_counter() - started, 1)
        force_length(folder, force)  # also when reused: this run's budgets
    return built


# --- measuring --------------------------------------------------------------------------------------


def rss_gib() -> dict[str, float]:
    """Current and peak resident memory of this process."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    current = 0.0
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        current = pages * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        pass
    return {"rss_gib": round(current, 2), "peak_rss_gib": round(peak, 2)}


def gpu_gib(torch: Any, cuda: bool) -> dict[str, float]:
    if not cuda:
        return {}
    return {
        "gpu_allocated_gib": round(torch.cuda.memory_allocated() / 2**30, 2),
        "gpu_max_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def copy_bandwidth_gbs(torch: Any, device: str, gib: float = 1.0) -> float:
    """Measured device memory bandwidth: bytes read plus written by a large copy, per second (median)."""
    n = int(gib * 2**30) // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=device).fill_(1)
    dst = torch.empty_like(src)
    times = []
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        dst.copy_(src)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    del src, dst
    return round(2 * n * 2 / statistics.median(times) / 1e9, 1)


def decode_bytes(model: Any) -> int:
    """Bytes of weights one decode step reads: every parameter but the input embedding table (one
    row is gathered) and, for a VLM, the vision tower (it runs once, in the prefill). A tied output
    projection reads the embedding table, so it counts once."""
    total = 0
    seen: set[int] = set()
    embed = model.get_input_embeddings().weight
    tied = model.get_output_embeddings() is not None and model.get_output_embeddings().weight is embed
    for name, p in model.named_parameters():
        if id(p) in seen or "vision_tower" in name or "multi_modal_projector" in name:
            continue
        seen.add(id(p))
        if p is embed and not tied:
            continue
        total += p.numel() * p.element_size()
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)


def stage_summary(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    return {
        "outcome": str(result.outcome),
        "timings_ms": result.timings_ms,
        "tokens": result.tokens,
        "notes": [n.code for n in result.notes],
        "raw_output_chars": len(result.raw_output or ""),
    }


def versions(torch: Any) -> dict[str, Any]:
    import importlib.util

    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "mamba_ssm": importlib.util.find_spec("mamba_ssm") is not None,
        "causal_conv1d": importlib.util.find_spec("causal_conv1d") is not None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run(args: argparse.Namespace, result: dict[str, Any], save: Any) -> dict[str, Any]:
    """Fill ``result`` section by section, calling ``save()`` after each, so a run cut short by a
    time limit still leaves every figure it measured."""
    import torch

    from auditor.backends.hf import cpu_has_bf16
    from auditor.images import load_image, load_image_bytes
    from auditor.pipeline import Auditor

    size: Size = "tiny" if args.smoke else "real"
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = "cuda" if cuda else "cpu"
    result.update({"size": size, "device": device, "versions": versions(torch)})
    result["cpu_bf16"] = cpu_has_bf16()
    result["build"] = ensure_checkpoints(
        Path(args.models), size, device, args.ground_tokens, args.reason_tokens
    )
    if cuda:
        torch.cuda.empty_cache()
    settings = Settings(
        grounder="hf",
        reader="hf",
        grounder_model=str(Path(args.models) / "grounder"),
        reader_model=str(Path(args.models) / "reader"),
        device=device,  # type: ignore[arg-type]
        dtype=args.dtype,
        grounder_max_new_tokens=args.ground_tokens,
        reader_reasoning_budget=args.reason_tokens,
        reader_max_new_tokens=args.answer_tokens,
        overlap_stages=not args.no_overlap,
        static_cache=args.static_cache,
        compile=args.compile,
        grounding_batch_size=max(args.batch, 1),
    ).validate()
    result["settings"] = {
        k: getattr(settings, k)
        for k in (
            "dtype",
            "attention",
            "static_cache",
            "compile",
            "overlap_stages",
            "grounding_stop_at_end",
            "grounding_batch_size",
            "grounder_max_new_tokens",
            "reader_reasoning_budget",
            "reader_max_new_tokens",
        )
    }
    engine = Auditor(settings)
    models: dict[str, Any] = {}
    for role in ("grounder", "reader"):
        backend = engine.grounder if role == "grounder" else engine.reader
        started = time.perf_counter()
        backend.load()
        inner = getattr(backend, "inner", backend)
        models[role] = {
            "parameters": parameter_count(Path(args.models) / role),
            "load_s": round(time.perf_counter() - started, 2),
            "dtype": inner._dtype,
            "decode_bytes": decode_bytes(inner._model),
            **rss_gib(),
            **gpu_gib(torch, cuda),
        }
        print(f"loaded {role}: {models[role]}", file=sys.stderr, flush=True)
    result["models"] = models
    result["both_resident"] = rss_gib() | gpu_gib(torch, cuda)
    if not cuda:
        result["memory_note"] = (
            "on CPU the bf16 safetensors are memory-mapped: weights page in at first use, so RSS after "
            "load is small and after_audit holds both models"
        )
    save()

    paths = [NIH / name for name in IMAGES if (NIH / name).is_file()]
    started = time.perf_counter()
    if paths:
        images = [load_image(str(p)) for p in paths]
        result["image"] = {"source": "NIH ChestX-ray14", "files": [p.name for p in paths]}
    else:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("L", (1024, 1024), 90).save(buf, format="PNG")
        images = [load_image_bytes(buf.getvalue())]
        result["image"] = {"source": "synthetic grey 1024 px (../shared/data absent)"}
    result["image"]["load_ms_each"] = round((time.perf_counter() - started) * 1000 / len(images), 1)

    walls: list[float] = []
    report = None
    for i in range(args.repeats + args.warmup):
        started = time.perf_counter()
        report = engine.audit_loaded(images[0], DRAFT)
        wall = (time.perf_counter() - started) * 1000
        if i >= args.warmup:
            walls.append(wall)
        print(f"audit {i}: {wall:.0f} ms", file=sys.stderr, flush=True)
    assert report is not None
    result["audit_batch1"] = {
        "repeats": len(walls),
        "warmup": args.warmup,
        "wall_ms": [round(w, 1) for w in walls],
        "p50_ms": percentile(walls, 0.5),
        "p90_ms": percentile(walls, 0.9),
        "grounding": stage_summary(report.grounding),
        "reading": stage_summary(report.reading),
        "reader_model_attempt": stage_summary(report.reading.fallback_from if report.reading else None),
        "comparison_mode": report.comparison.mode,
        "flags": [f.rule_id for f in report.comparison.flags],
        "audit_notes": [n.code for n in report.notes],
    }
    result["after_audit"] = rss_gib() | gpu_gib(torch, cuda)
    save()

    bandwidth = copy_bandwidth_gbs(torch, device, 0.25 if args.smoke else 1.0)
    floor_ms = (
        (
            args.ground_tokens * models["grounder"]["decode_bytes"]
            + (args.reason_tokens + args.answer_tokens) * models["reader"]["decode_bytes"]
        )
        / (bandwidth * 1e9)
        * 1000
    )
    result["bandwidth_floor"] = {
        "copy_bandwidth_gb_s": bandwidth,
        "audit_floor_ms": round(floor_ms, 1),
        "p50_over_floor": round(result["audit_batch1"]["p50_ms"] / floor_ms, 2),
        "what": "decoded tokens x bytes of weights each reads / measured copy bandwidth; prefill excluded",
    }

    save()
    if args.batch > 1:
        result["worklist"] = worklist(engine, images, args)
        wl = result["worklist"]
        wl["floor_audits_per_s"] = round(args.batch / (floor_ms / 1000), 2)
    return result


def worklist(engine: Any, images: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """``--studies`` audits from ``--batch`` threads: their grounding calls coalesce into batches."""
    from concurrent.futures import ThreadPoolExecutor

    studies = [images[i % len(images)] for i in range(args.studies)]
    grounder = engine.grounder
    before = len(getattr(grounder, "batches", []))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.batch) as pool:
        reports = list(pool.map(lambda im: engine.audit_loaded(im, DRAFT), studies))
    seconds = time.perf_counter() - started
    return {
        "studies": len(reports),
        "threads": args.batch,
        "seconds": round(seconds, 2),
        "audits_per_s": round(len(reports) / seconds, 3),
        "grounding_batches": getattr(grounder, "batches", [])[before:],
        "outcomes": sorted({str(r.grounding.outcome) for r in reports if r.grounding}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="folder for the two checkpoints (built when missing)")
    ap.add_argument("--smoke", action="store_true", help="tiny models: proves the script, measures nothing")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto")
    ap.add_argument("--ground-tokens", type=int, default=160)
    ap.add_argument("--reason-tokens", type=int, default=256)
    ap.add_argument("--answer-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="worklist threads and grounding batch; 0: skip")
    ap.add_argument("--studies", type=int, default=32, help="worklist size for the throughput run")
    ap.add_argument("--no-overlap", action="store_true", help="ground, then read (overlap_stages off)")
    ap.add_argument("--static-cache", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", help="JSON path (default: bench/results/real_size-<device>.json)")
    args = ap.parse_args()
    started = time.perf_counter()
    result: dict[str, Any] = {}

    def out_path() -> Path:
        if args.out:
            return Path(args.out)
        name = result.get("versions", {}).get("gpu", "cpu").lower().replace(" ", "-")
        return RESULTS / f"real_size-{name}{'-smoke' if args.smoke else ''}.json"

    def save() -> None:
        result["total_s"] = round(time.perf_counter() - started, 1)
        path = out_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")

    run(args, result, save)
    save()
    summary = {k: result[k] for k in ("models", "audit_batch1", "bandwidth_floor", "worklist") if k in result}
    print(json.dumps(summary, indent=1, default=str))
    print(f"wrote {out_path()}", file=sys.stderr)


if __name__ == "__main__":
    main()
