"""`train sft`: LoRA on the grounder's attention and MLP projections, a plain torch loop.

Why a loop of our own and not a trainer framework: the records are ours, the loss mask is ours
(`auditor.train.encode`: the assistant turn only), and resuming must replay exactly the same examples
in the same order, which is easy to prove when the order is a pure function of (seed, epoch, step).

- Defaults are the published recipe: rank 16, alpha 16, learning rate 2e-4, LoRA on the language
  model's q/k/v/o and gate/up/down projections (the vision tower is left as it is).
- QLoRA (4-bit NF4 base, bf16 compute) only where bitsandbytes is installed and a GPU is present;
  ``--quantize 4bit`` without them is an error, never a silent full-precision run.
- One example per forward pass, ``grad_accum`` of them per optimizer step: no padding, small memory.
- A checkpoint every ``save_every`` steps (adapter, optimizer, scheduler, step) written atomically;
  ``resume`` continues from the newest with the same config, and refuses a different one.
- Every step's loss, learning rate and token rate go to ``train_log.jsonl`` and, briefly, to stderr.

torch, transformers and peft are imported inside the functions: the `train` extra is only needed here.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from auditor.train.records import SftRecord, read_records

PROJECTIONS: Final = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TEXT_TOWER: Final = "language_model"
INSTALL_HINT: Final = "pip install 'cxr-draft-auditor[models,train]'"
STATE_FILE: Final = "trainer_state.pt"
ADAPTER_DIR: Final = "adapter"
LOG_FILE: Final = "train_log.jsonl"
RUN_FILE: Final = "run.json"

Quantize = Literal["auto", "none", "4bit"]


class TrainError(Exception):
    """A training run that cannot start or continue; the message says what to change."""


@dataclass(frozen=True)
class SftConfig:
    base: str
    train: Path
    out: Path
    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.05
    lr: float = 2e-4
    epochs: int = 1
    max_steps: int | None = None
    grad_accum: int = 1
    warmup_steps: int = 0
    schedule: Literal["linear", "constant"] = "linear"
    weight_decay: float = 0.0
    save_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    quantize: Quantize = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    gradient_checkpointing: bool = False
    revision: str | None = None
    log_every: int = 1

    def identity(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed (not where it is written or how it logs)."""
        skip = {"out", "save_every", "keep_checkpoints", "log_every", "max_steps", "train"}
        same = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k not in skip}
        same["train_sha256"] = sha256_of(self.train) if self.train.is_file() else None
        return same


@dataclass
class SftResult:
    steps: int
    examples: int
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    resumed_from: int | None = None
    adapter: Path | None = None
    quantized: bool = False
    device: str = "cpu"
    peak_memory_bytes: int | None = None

    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


# --- the schedule: which examples each step sees, and at what learning rate -------------------------------


def total_steps(config: SftConfig, n_examples: int) -> int:
    """``max_steps`` when given (it overrides the epochs, as in the Hugging Face trainers), else enough
    optimizer steps to see every example ``epochs`` times."""
    if config.max_steps is not None:
        return config.max_steps
    return math.ceil(n_examples / config.grad_accum) * config.epochs


def example_order(n_examples: int, seed: int, start: int = 0) -> Iterator[int]:
    """Example indices from position ``start`` of an endless stream: each epoch is a fresh seeded
    shuffle, so position p always holds the same example, whether or not the run was resumed."""
    epoch, offset = divmod(start, n_examples)
    while True:
        order = list(range(n_examples))
        random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
        yield from order[offset:]
        epoch, offset = epoch + 1, 0


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or linear decay to zero at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return max(0.0, (total - step) / max(1, total - warmup))


# --- model -----------------------------------------------------------------------------------------------


def training_stack() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise TrainError(
            f"training needs torch, transformers and peft ({exc}); install: {INSTALL_HINT}"
        ) from None
    return torch, transformers, peft


def target_modules() -> str:
    """A regex (peft full-matches it on module names) for the text tower's projections only."""
    return rf".*{TEXT_TOWER}.*\.({'|'.join(PROJECTIONS)})"


def wants_4bit(setting: Quantize, torch: Any) -> bool:
    """QLoRA only where it can run: bitsandbytes importable and a CUDA device present."""
    has_gpu = bool(torch.cuda.is_available())
    try:
        import bitsandbytes  # noqa: F401

        has_bnb = True
    except ImportError:
        has_bnb = False
    if setting == "4bit" and not (has_gpu and has_bnb):
        missing = "a CUDA device" if not has_gpu else "bitsandbytes (pip install bitsandbytes)"
        raise TrainError(f"--quantize 4bit needs {missing}; use --quantize none for plain LoRA")
    return setting == "4bit" or (setting == "auto" and has_gpu and has_bnb)


def _device_dtype(config: SftConfig, torch: Any) -> tuple[str, Any]:
    has_gpu = bool(torch.cuda.is_available())
    if config.device == "cuda" and not has_gpu:
        raise TrainError("--device cuda: torch sees no CUDA device")
    device = "cuda" if (config.device == "cuda" or (config.device == "auto" and has_gpu)) else "cpu"
    if config.dtype == "auto":
        return device, torch.bfloat16 if device == "cuda" else torch.float32
    return device, getattr(torch, config.dtype)


@dataclass(frozen=True)
class Loaded:
    """The base with fresh LoRA layers, ready to train, and where and how it runs."""

    model: Any
    processor: Any
    device: str
    dtype: Any
    quantized: bool


def load_for_training(config: SftConfig) -> Loaded:
    """Load the base (4-bit where QLoRA applies) and wrap it in LoRA layers on `target_modules`."""
    torch, transformers, peft = training_stack()
    device, dtype = _device_dtype(config, torch)
    quantized = wants_4bit(config.quantize, torch) if device == "cuda" else config.quantize == "4bit"
    if quantized and device != "cuda":
        raise TrainError("--quantize 4bit needs --device cuda")
    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": device, "revision": config.revision}
    if quantized:
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    try:
        processor = transformers.AutoProcessor.from_pretrained(config.base, revision=config.revision)
        model = transformers.AutoModelForImageTextToText.from_pretrained(config.base, **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load the base model {config.base!r}: {exc}") from None
    if quantized:
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=target_modules(),
        bias="none",
    )
    torch.manual_seed(config.seed)  # the LoRA A matrices are drawn here
    model = peft.get_peft_model(model, lora)
    if not any("lora_A" in name for name, _ in model.named_parameters()):
        raise TrainError(f"no module of {config.base!r} matches {target_modules()}: nothing to train")
    compute = torch.bfloat16 if quantized else dtype
    return Loaded(model, processor, device, compute, quantized)


# --- checkpoints -----------------------------------------------------------------------------------------


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out/checkpoints``, oldest first (a half-written one has no state file)."""
    found = []
    for path in (out / "checkpoints").glob("step-*"):
        if (path / STATE_FILE).is_file() and path.name[5:].isdigit():
            found.append((int(path.name[5:]), path))
    return sorted(found)


def _save_checkpoint(model: Any, optimizer: Any, scheduler: Any, step: int, config: SftConfig) -> Path:
    torch = sys.modules["torch"]
    folder = config.out / "checkpoints" / f"step-{step:06d}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "identity": config.identity(),
    }
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    for _, old in checkpoints(config.out)[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _restore(model: Any, optimizer: Any, scheduler: Any, folder: Path, config: SftConfig) -> int:
    torch, _, peft = training_stack()
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
    if state["identity"] != config.identity():
        changed = sorted(k for k in config.identity() if state["identity"].get(k) != config.identity()[k])
        raise TrainError(
            f"{folder} was trained with different settings ({', '.join(changed)}); "
            "use the same flags or another --out"
        )
    weights = peft.utils.load_peft_weights(str(folder), device=str(model.device))
    peft.set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


# --- the loop --------------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(
    config: SftConfig,
    *,
    resume: bool = False,
    say: Callable[[str], None] = lambda _m: None,
    records: list[SftRecord] | None = None,
) -> SftResult:
    """Run (or continue) one fine-tune; returns what it did. The adapter lands in ``out/adapter``."""
    torch, _, _ = training_stack()
    records = list(read_records(config.train)) if records is None else records
    if not records:
        raise TrainError(f"{config.train}: no records to train on")
    found = checkpoints(config.out)
    if found and not resume:
        raise TrainError(
            f"{config.out} already holds checkpoints; pass --resume to continue, or another --out"
        )
    config.out.mkdir(parents=True, exist_ok=True)
    loaded = load_for_training(config)
    model, device = loaded.model, loaded.device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = total_steps(config, len(records))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, config.warmup_steps, config.schedule)
    )
    result = SftResult(steps=0, examples=len(records), quantized=loaded.quantized, device=device)
    start = 0
    if found and resume:
        start = _restore(model, optimizer, scheduler, found[-1][1], config)
        result.resumed_from = start
        say(f"resuming from {found[-1][1]} (step {start} of {total})")
    _write_run(config, records, total, loaded)
    order = example_order(len(records), config.seed, start * config.grad_accum)
    model.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with open(config.out / LOG_FILE, "a", encoding="utf-8") as log:
        for step in range(start, total):
            torch.manual_seed(config.seed * 1_000_003 + step)  # dropout masks: the same on a resumed run
            loss_sum, tokens, target_tokens = 0.0, 0, 0
            for _ in range(config.grad_accum):
                batch = _to(_encoded(loaded.processor, records[next(order)]), model, loaded.dtype)
                loss = model(**batch).loss
                (loss / config.grad_accum).backward()
                loss_sum += float(loss.detach())
                tokens += int(batch["input_ids"].numel())
                target_tokens += int((batch["labels"] != -100).sum())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            mean = loss_sum / config.grad_accum
            result.losses.append(mean)
            result.tokens += tokens
            result.steps = step + 1
            elapsed = time.perf_counter() - started
            entry = {
                "step": step + 1,
                "of": total,
                "loss": round(mean, 6),
                "lr": scheduler.get_last_lr()[0],
                "tokens": tokens,
                "target_tokens": target_tokens,
                "tokens_per_s": round(result.tokens / elapsed, 2) if elapsed > 0 else None,
                "elapsed_s": round(elapsed, 3),
            }
            log.write(json.dumps(entry) + "\n")
            log.flush()
            if (step + 1) % config.log_every == 0 or step + 1 == total:
                say(
                    f"step {step + 1}/{total} loss {mean:.4f} lr {entry['lr']:.2e} "
                    f"{entry['tokens_per_s']} tok/s"
                )
            if (step + 1) % config.save_every == 0 and step + 1 < total:
                _save_checkpoint(model, optimizer, scheduler, step + 1, config)
    result.seconds = time.perf_counter() - started
    if device == "cuda":
        result.peak_memory_bytes = int(torch.cuda.max_memory_allocated())
    _save_checkpoint(model, optimizer, scheduler, total, config)
    adapter = config.out / ADAPTER_DIR
    shutil.rmtree(adapter, ignore_errors=True)
    model.save_pretrained(adapter)
    result.adapter = adapter
    return result


def _encoded(processor: Any, record: SftRecord) -> dict[str, Any]:
    from auditor.train.encode import encode

    return encode(processor, record)


def _to(batch: dict[str, Any], model: Any, dtype: Any) -> dict[str, Any]:
    """Move to the model; floating tensors (the pixels) take the compute dtype as well."""
    return {
        k: v.to(model.device, dtype=dtype) if v.is_floating_point() else v.to(model.device)
        for k, v in batch.items()
    }


def _write_run(config: SftConfig, records: list[SftRecord], total: int, loaded: Loaded) -> None:
    import peft
    import torch
    import transformers

    data = {
        "config": {**config.identity(), "train": str(config.train), "out": str(config.out)},
        "examples": len(records),
        "steps": total,
        "target_modules": target_modules(),
        "quantized_4bit": loaded.quantized,
        "device": loaded.device,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "prompt_versions": sorted({r.prompt_version for r in records}),
        "box_formats": sorted({r.box_format for r in records}),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    }
    (config.out / RUN_FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")
