"""GPU cost of the two real model stages, at their real sizes, with random weights (no hub needed).

Why random weights: no machine here reaches the Hugging Face hub. Cost (memory, prefill, decode,
throughput) depends on the architecture and the token counts, not on the weight values, so a
random model of the published architecture, fed input ids of the right lengths, costs what the
real one costs. Outputs are meaningless and never looked at; every generation is forced to its
full length (``min_new_tokens == max_new_tokens``) so timings do not depend on when random weights
happen to emit an end token.

Models (bf16 on CUDA):
- Grounder: MedGemma 1.5 4B = Gemma3ForConditionalGeneration, text 2560 hidden, 34 layers, 8 heads,
  4 KV heads, head_dim 256, MLP 10240, vocab 262208, sliding window 1024 with 5 local : 1 global;
  SigLIP vision 896 px, patch 14, 1152 hidden, 27 layers, 16 heads, MLP 4304; 256 soft tokens per
  image (config as in ../shared/reference/medgemma4b_random.py: 4.30 B parameters).
- Reader: NVIDIA Nemotron-3 Nano 4B (``nemotron_h``), layout as published in NVIDIA's Megatron-Bridge
  recipe for nvidia/NVIDIA-Nemotron-3-Nano-4B-BF16: 42 layers ``M-M-M-MM-M-M*-M-M*-M-M-M*-M-M-MM*-MMM-M-M-``
  (21 Mamba2, 4 attention, 17 MLP), hidden 3136, MLP 12544 (relu2), 40 heads / 8 KV heads, head_dim
  128, Mamba2 96 heads x 80, state 128, 8 groups, chunk 256, vocab 131072, untied embeddings
  (3.97 B parameters). Assumed, not read from the checkpoint: conv kernel 4, no RoPE (nemotron_h).

What one audit costs here: ground one image (256 image tokens + the grounding prompt, 160 new
tokens), then read one draft the way HFReader does (system prompt + draft, 256 reasoning tokens,
then the close tag and 64 answer tokens after a re-prefill). Prompt lengths come from the project's
real prompt texts at about 4 characters per token. Image decoding, the processor and recovery are
CPU work outside this benchmark.

Without the ``mamba_ssm``/``causal_conv1d`` kernels, transformers runs Mamba2 in plain PyTorch: the
JSON records which path ran, because it changes the reader's decode cost a lot.

Run:   python bench/gpu_models.py                      (CUDA; writes bench/results/gpu_models-<gpu>.json)
       python bench/gpu_models.py --cpu-smoke          (tiny configs on CPU, proves the script end to end)
       python bench/gpu_models.py --check-configs      (real-size parameter counts on the meta device)
Options: --out FILE, --batches 1,4,16, --ground-tokens 160, --reason-tokens 256, --answer-tokens 64,
         --repeats 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CHARS_PER_TOKEN = 4
DRAFT = "Mild cardiomegaly. No pneumothorax. Possible right upper lobe nodule. Small left pleural effusion."

NEMOTRON_PATTERN = "M-M-M-MM-M-M*-M-M*-M-M-M*-M-M-MM*-MMM-M-M-"
BLOCK_KIND = {"M": "linear_attention", "*": "full_attention", "-": "mlp"}


# --- the shapes being measured ----------------------------------------------------------------------


@dataclass(frozen=True)
class GemmaIds:
    """Special token ids of the Gemma3 vocabulary the input ids are built around."""

    bos: int
    start_turn: int
    end_turn: int
    boi: int
    eoi: int
    image: int
    text_low: int
    text_high: int


@dataclass
class Spec:
    """Everything that differs between the real-size run and the CPU smoke run."""

    name: str
    device: str
    dtype: Any
    gemma_config: Any
    gemma_ids: GemmaIds
    image_size: int
    mm_tokens: int
    nemotron_config: Any
    nemotron_text_range: tuple[int, int]
    close_ids: list[int]
    notes: list[str] = field(default_factory=list)


def _prompt_tokens() -> tuple[int, int]:
    """Grounding and reader prompt lengths, from the project's own prompt texts."""
    from auditor.prompts import grounding_prompt, reader_prompt
    from auditor.recovery import BoxFormat

    ground = math.ceil(len(grounding_prompt(BoxFormat()).text) / CHARS_PER_TOKEN) + 8  # + chat markup
    read = math.ceil((len(reader_prompt().text) + len(DRAFT)) / CHARS_PER_TOKEN) + 12
    return ground, read


def real_spec(torch: Any) -> Spec:
    """The published sizes, bf16 on the first CUDA device."""
    from transformers import Gemma3Config, NemotronHConfig

    gemma = Gemma3Config(
        text_config=dict(
            vocab_size=262_208,
            hidden_size=2560,
            intermediate_size=10_240,
            num_hidden_layers=34,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=256,
            query_pre_attn_scalar=256,
            sliding_window=1024,
            layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(34)],
            max_position_embeddings=131_072,
            rope_scaling={"rope_type": "linear", "factor": 8.0},
            rope_theta=1_000_000.0,
            rope_local_base_freq=10_000.0,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=[1, 106],
        ),
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=27,
            num_attention_heads=16,
            image_size=896,
            patch_size=14,
            vision_use_head=False,
        ),
        mm_tokens_per_image=256,
        boi_token_index=255_999,
        eoi_token_index=256_000,
        image_token_index=262_144,
    )
    nemotron = NemotronHConfig(
        vocab_size=131_072,
        hidden_size=3136,
        intermediate_size=12_544,
        layers_block_type=[BLOCK_KIND[c] for c in NEMOTRON_PATTERN],
        num_attention_heads=40,
        num_key_value_heads=8,
        head_dim=128,
        mamba_num_heads=96,
        mamba_head_dim=80,
        n_groups=8,
        ssm_state_size=128,
        chunk_size=256,
        conv_kernel=4,
        tie_word_embeddings=False,
        max_position_embeddings=262_144,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return Spec(
        name="real-size",
        device="cuda",
        dtype=torch.bfloat16,
        gemma_config=gemma,
        gemma_ids=GemmaIds(2, 105, 106, 255_999, 256_000, 262_144, 1_000, 200_000),
        image_size=896,
        mm_tokens=256,
        nemotron_config=nemotron,
        nemotron_text_range=(1_000, 130_000),
        close_ids=[12, 1010],  # "</think>" and "\n": two ids, as in the real tokenizer
    )


def smoke_spec(torch: Any) -> Spec:
    """Drastically shrunk configs of the same two architectures, float32 on CPU."""
    from transformers import Gemma3Config, NemotronHConfig

    gemma = Gemma3Config(
        text_config=dict(
            vocab_size=1024,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=64,
            layer_types=["sliding_attention", "full_attention"],
            max_position_embeddings=4096,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=[1, 6],
        ),
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=8,
            vision_use_head=False,
        ),
        mm_tokens_per_image=16,
        boi_token_index=7,
        eoi_token_index=8,
        image_token_index=9,
    )
    nemotron = NemotronHConfig(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        layers_block_type=[BLOCK_KIND[c] for c in "M-*-M-"],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        mamba_num_heads=8,
        mamba_head_dim=16,
        n_groups=2,
        ssm_state_size=16,
        chunk_size=16,
        conv_kernel=4,
        max_position_embeddings=4096,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return Spec(
        name="cpu-smoke",
        device="cpu",
        dtype=torch.float32,
        gemma_config=gemma,
        gemma_ids=GemmaIds(2, 5, 6, 7, 8, 9, 16, 1000),
        image_size=64,
        mm_tokens=16,
        nemotron_config=nemotron,
        nemotron_text_range=(16, 1000),
        close_ids=[10, 11],
        notes=["CPU smoke run: tiny configs, numbers say nothing about the real models"],
    )


# --- timing helpers ---------------------------------------------------------------------------------


class Clock:
    """Wall time that waits for queued GPU work, and peak GPU memory per phase."""

    def __init__(self, torch: Any, device: str) -> None:
        self.torch = torch
        self.cuda = device == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def time_ms(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        self.sync()
        started = time.perf_counter()
        result = fn()
        self.sync()
        return result, (time.perf_counter() - started) * 1000

    def median_ms(self, fn: Callable[[], Any], repeats: int) -> float:
        return statistics.median(self.time_ms(fn)[1] for _ in range(repeats))

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        if not self.cuda:
            return None
        return round(float(self.torch.cuda.max_memory_allocated()) / 2**30, 2)


def _random_ids(torch: Any, low: int, high: int, n: int, generator: Any) -> list[int]:
    return [int(x) for x in torch.randint(low, high, (n,), generator=generator)]


def _params_m(model: Any) -> float:
    return round(float(sum(p.numel() for p in model.parameters())) / 1e6, 1)


# --- the two stages -----------------------------------------------------------------------------------


class GroundingStage:
    """The grounder's forward passes on input ids laid out like Gemma3's chat template with one image."""

    def __init__(self, torch: Any, spec: Spec, prompt_tokens: int) -> None:
        from transformers import Gemma3ForConditionalGeneration

        self.torch, self.spec = torch, spec
        cls: Any = Gemma3ForConditionalGeneration
        with torch.device(spec.device):  # built in place: no CPU copy, no slow host-to-device transfer
            self.model = cls._from_config(spec.gemma_config, dtype=spec.dtype).eval()
        self.prompt_tokens = prompt_tokens

    def inputs(self, batch: int) -> dict[str, Any]:
        torch, spec, ids = self.torch, self.spec, self.spec.gemma_ids
        g = torch.Generator().manual_seed(0)
        half = self.prompt_tokens // 2
        rows = []
        for _ in range(batch):
            text_a = _random_ids(torch, ids.text_low, ids.text_high, half, g)
            text_b = _random_ids(torch, ids.text_low, ids.text_high, self.prompt_tokens - half, g)
            image = [ids.boi, *([ids.image] * spec.mm_tokens), ids.eoi]
            rows.append([ids.bos, ids.start_turn, *text_a, *image, *text_b, ids.end_turn, ids.start_turn])
        input_ids = torch.tensor(rows, device=spec.device)
        size = spec.image_size
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "token_type_ids": (input_ids == ids.image).long(),
            "pixel_values": torch.randn(batch, 3, size, size, generator=g).to(spec.device, spec.dtype),
        }

    def prefill(self, inputs: dict[str, Any]) -> Any:
        with self.torch.inference_mode():
            return self.model(**inputs, logits_to_keep=1)

    def generate(self, inputs: dict[str, Any], tokens: int) -> Any:
        with self.torch.inference_mode():
            return self.model.generate(
                **inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0
            )


class ReadingStage:
    """The reader's forward passes: the two-phase budgeted generation HFReader runs."""

    def __init__(self, torch: Any, spec: Spec, prompt_tokens: int) -> None:
        from transformers import NemotronHForCausalLM

        self.torch, self.spec = torch, spec
        cls: Any = NemotronHForCausalLM
        with torch.device(spec.device):
            self.model = cls._from_config(spec.nemotron_config, dtype=spec.dtype).eval()
        self.prompt_tokens = prompt_tokens

    def inputs(self, batch: int) -> dict[str, Any]:
        g = self.torch.Generator().manual_seed(1)
        low, high = self.spec.nemotron_text_range
        rows = [_random_ids(self.torch, low, high, self.prompt_tokens, g) for _ in range(batch)]
        input_ids = self.torch.tensor(rows, device=self.spec.device)
        return {"input_ids": input_ids, "attention_mask": self.torch.ones_like(input_ids)}

    def prefill(self, inputs: dict[str, Any]) -> Any:
        with self.torch.inference_mode():
            return self.model(**inputs, logits_to_keep=1)

    def generate(self, inputs: dict[str, Any], tokens: int) -> Any:
        with self.torch.inference_mode():
            return self.model.generate(
                **inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0
            )

    def read(self, inputs: dict[str, Any], reason: int, answer: int) -> Any:
        """Phase 1: ``reason`` thinking tokens; append the close tag; phase 2 re-prefills and answers."""
        torch = self.torch
        thought = self.generate(inputs, reason) if reason > 0 else inputs["input_ids"]
        batch = thought.shape[0]
        close = torch.tensor([self.spec.close_ids] * batch, device=thought.device, dtype=thought.dtype)
        cont = torch.cat([thought, close], dim=1)
        return self.generate({"input_ids": cont, "attention_mask": torch.ones_like(cont)}, answer)


# --- the measurements -----------------------------------------------------------------------------------


def per_token_ms(clock: Clock, stage: Any, inputs: dict[str, Any], n: int = 32) -> float:
    """Decode cost: (time of n new tokens - time of 1) / (n - 1), so prefill cancels out."""
    one = clock.median_ms(lambda: stage.generate(inputs, 1), 3)
    many = clock.median_ms(lambda: stage.generate(inputs, n), 2)
    return round((many - one) / (n - 1), 3)


def audit_ms(
    clock: Clock, ground: GroundingStage, read: ReadingStage, batch: int, args: argparse.Namespace
) -> dict[str, float]:
    """One audit of ``batch`` images and drafts: grounding then reading, each a single batched call."""
    g_in, r_in = ground.inputs(batch), read.inputs(batch)
    g_ms = clock.median_ms(lambda: ground.generate(g_in, args.ground_tokens), args.repeats)
    r_ms = clock.median_ms(lambda: read.read(r_in, args.reason_tokens, args.answer_tokens), args.repeats)
    return {"ground_ms": round(g_ms, 1), "read_ms": round(r_ms, 1), "total_ms": round(g_ms + r_ms, 1)}


def measure(torch: Any, spec: Spec, args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock(torch, spec.device)
    ground_prompt, read_prompt = _prompt_tokens()
    out: dict[str, Any] = {"models": {}, "peak_gib": {}}

    clock.reset_peak()
    ground, g_load = clock.time_ms(lambda: GroundingStage(torch, spec, ground_prompt))
    read, r_load = clock.time_ms(lambda: ReadingStage(torch, spec, read_prompt))
    out["peak_gib"]["after_load"] = clock.peak_gib()
    out["models"]["grounder"] = {"params_m": _params_m(ground.model), "load_s": round(g_load / 1000, 2)}
    out["models"]["reader"] = {"params_m": _params_m(read.model), "load_s": round(r_load / 1000, 2)}
    progress(f"built both models ({g_load / 1000:.1f} s + {r_load / 1000:.1f} s)")

    g_in, r_in = ground.inputs(1), read.inputs(1)
    ground.generate(g_in, 4), read.generate(r_in, 4)  # warm-up: kernels, allocator, autotuning
    seq_g, seq_r = int(g_in["input_ids"].shape[1]), int(r_in["input_ids"].shape[1])
    out["models"]["grounder"] |= {
        "prompt_tokens": seq_g,
        "image_tokens": spec.mm_tokens,
        "prefill_ms": round(clock.median_ms(lambda: ground.prefill(g_in), 3), 1),
        "decode_ms_per_token": per_token_ms(clock, ground, g_in),
    }
    out["models"]["reader"] |= {
        "prompt_tokens": seq_r,
        "prefill_ms": round(clock.median_ms(lambda: read.prefill(r_in), 3), 1),
        "decode_ms_per_token": per_token_ms(clock, read, r_in),
    }
    progress("prefill and decode measured")

    clock.reset_peak()
    out["audit_batch1"] = audit_ms(clock, ground, read, 1, args)
    out["peak_gib"]["audit_batch1"] = clock.peak_gib()
    progress(f"one audit: {out['audit_batch1']['total_ms']:.0f} ms")

    out["throughput"] = []
    for batch in args.batches:
        clock.reset_peak()
        timing = audit_ms(clock, ground, read, batch, args)
        row = {"batch": batch, **timing, "audits_per_s": round(batch / (timing["total_ms"] / 1000), 3)}
        row["peak_gib"] = clock.peak_gib()
        out["throughput"].append(row)
        progress(f"batch {batch}: {row['audits_per_s']} audits/s")
    out["peak_gib"]["overall"] = max((v for v in out["peak_gib"].values() if v is not None), default=None)
    if spec.device == "cpu":
        out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


# --- report ---------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def environment(torch: Any, spec: Spec) -> dict[str, Any]:
    import transformers

    gpu = torch.cuda.get_device_name() if spec.device == "cuda" else None
    return {
        "run": spec.name,
        "device": gpu or f"CPU ({platform.processor() or platform.machine()})",
        "dtype": str(spec.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "mamba_ssm_kernels": importlib.util.find_spec("mamba_ssm") is not None,
        "causal_conv1d_kernels": importlib.util.find_spec("causal_conv1d") is not None,
        "python": platform.python_version(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def table(result: dict[str, Any]) -> str:
    models = result["results"]["models"]
    g, r = models["grounder"], models["reader"]
    budget = result["budgets"]
    env = result["environment"]
    lines = [
        f"{env['device']}  {env['dtype']}  ({env['run']})",
        f"{'':28}{'grounder (Gemma3 4B)':>22}{'reader (Nemotron-H 4B)':>24}",
        f"{'parameters (M)':28}{g['params_m']:>22}{r['params_m']:>24}",
        f"{'load: build + to device (s)':28}{g['load_s']:>22}{r['load_s']:>24}",
        f"{'prompt tokens':28}{g['prompt_tokens']:>22}{r['prompt_tokens']:>24}",
        f"{'prefill (ms)':28}{g['prefill_ms']:>22}{r['prefill_ms']:>24}",
        f"{'decode (ms / token)':28}{g['decode_ms_per_token']:>22}{r['decode_ms_per_token']:>24}",
        "",
        f"one audit (ground {budget['ground_tokens']} tok; read {budget['reason_tokens']} reasoning + "
        f"{budget['answer_tokens']} answer tok): {result['results']['audit_batch1']}",
        "",
        f"{'batch':>6}{'ground ms':>12}{'read ms':>12}{'total ms':>12}{'audits/s':>11}{'peak GiB':>10}",
    ]
    for row in result["results"]["throughput"]:
        peak = "-" if row["peak_gib"] is None else row["peak_gib"]
        lines.append(
            f"{row['batch']:>6}{row['ground_ms']:>12}{row['read_ms']:>12}{row['total_ms']:>12}"
            f"{row['audits_per_s']:>11}{peak:>10}"
        )
    lines.append(f"peak GPU memory (GiB): {result['results']['peak_gib']}")
    if "peak_rss_gib" in result["results"]:
        lines.append(f"peak RSS (GiB): {result['results']['peak_rss_gib']}")
    return "\n".join(lines)


def check_configs(torch: Any) -> int:
    """Parameter counts of the real-size configs, built on the meta device: a free sanity check."""
    from transformers import Gemma3ForConditionalGeneration, NemotronHForCausalLM

    spec = real_spec(torch)
    with torch.device("meta"):
        gemma = Gemma3ForConditionalGeneration(spec.gemma_config)
        nemotron = NemotronHForCausalLM(spec.nemotron_config)
    vision = sum(p.numel() for p in gemma.model.vision_tower.parameters()) / 1e6
    print(
        f"grounder Gemma3 (MedGemma 4B): {_params_m(gemma):,.1f} M parameters (vision tower {vision:,.1f} M)"
    )
    print(
        f"reader NemotronH (Nemotron-3 Nano 4B, {NEMOTRON_PATTERN}): {_params_m(nemotron):,.1f} M parameters"
    )
    return 0


def default_out(spec: Spec, device_name: str) -> Path:
    """GPU runs go to bench/results/ by GPU name; a smoke run never lands beside real numbers."""
    if spec.device == "cpu":
        return Path(tempfile.gettempdir()) / "gpu_models-cpu-smoke.json"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", device_name).strip("-") or "gpu"
    return RESULTS / f"gpu_models-{slug}.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny configs on CPU: proves the script runs")
    ap.add_argument("--out", type=Path, help="JSON path (default: bench/results/gpu_models-<gpu>.json)")
    ap.add_argument("--batches", default="1,4,16", help="comma-separated batch sizes for throughput")
    ap.add_argument("--ground-tokens", type=int, default=160)
    ap.add_argument("--reason-tokens", type=int, default=256)
    ap.add_argument("--answer-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="median over this many runs per audit timing")
    ap.add_argument(
        "--check-configs",
        action="store_true",
        help="build the real-size models on the meta device and print parameter counts (no GPU, no weights)",
    )
    args = ap.parse_args(argv)
    args.batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    if (
        not args.batches
        or min(args.batches) < 1
        or min(args.ground_tokens, args.answer_tokens, args.repeats) < 1
    ):
        ap.error("batches and token budgets must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("needs torch and transformers: pip install 'cxr-draft-auditor[models]'", file=sys.stderr)
        return 2
    if args.check_configs:
        return check_configs(torch)
    if args.cpu_smoke:
        spec = smoke_spec(torch)
    elif not torch.cuda.is_available():
        print(
            "gpu_models.py measures the real-size models on a CUDA GPU, and torch sees none here "
            f"(torch {torch.__version__}, CUDA {torch.version.cuda}). Run it on a GPU machine, or pass "
            "--cpu-smoke to check the script end to end on tiny configs.",
            file=sys.stderr,
        )
        return 2
    else:
        spec = real_spec(torch)
    torch.manual_seed(0)
    env = environment(torch, spec)
    progress(f"{spec.name} on {env['device']}")
    result = {
        "benchmark": "gpu_models",
        "environment": env,
        "budgets": {
            k: getattr(args, k) for k in ("ground_tokens", "reason_tokens", "answer_tokens", "batches")
        },
        "assumptions": {
            "weights": "random (cost depends on architecture and token counts only)",
            "prompt_tokens": f"project prompt texts at ~{CHARS_PER_TOKEN} chars/token plus chat markup",
            "reader": "two-phase like HFReader: reasoning, close tag, re-prefill, answer",
            "reader_layout": NEMOTRON_PATTERN if spec.name == "real-size" else "M-*-M-",
            "excluded": "image decoding, processor, recovery (CPU-side)",
            "notes": spec.notes,
        },
        "configs": {
            "grounder": asdict(spec.gemma_ids) | {"image_size": spec.image_size, "mm_tokens": spec.mm_tokens},
            "reader_hidden": spec.nemotron_config.hidden_size,
        },
        "results": measure(torch, spec, args),
    }
    out = args.out or default_out(spec, env["device"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
