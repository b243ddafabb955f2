"""The transformers backends: MedGemma grounds the image, Nemotron reads the draft, in-process.

Why this module looks the way it does:

- torch and transformers are imported inside functions only, so ``import auditor.backends.hf`` (done
  by the factory at server start) stays cheap and a machine without the ``models`` extra can still
  start the server and report a clear error on first use.
- A model loads once per backend instance, under a lock, and stays resident. A failed load leaves
  nothing half-built behind and is retried on the next call, so a user can fix the path (or free
  GPU memory) without restarting the server.
- Everything that can go wrong in a model maps to a ``BackendError`` with a stable code
  (``load_failed``, ``device_unavailable``, ``out_of_memory``, ``generation_failed``) and a message
  naming the model; unusable *text* is not an error: recovery turns it into a visible outcome.
- The reader's reasoning is bounded: at most ``reader_reasoning_budget`` tokens of thinking, then the
  think block is closed for the model and the answer is generated with its own budget, so one
  rambling trace cannot hold the tool past a client's timeout.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

from auditor.activity import log as activity
from auditor.activity import stage_name
from auditor.backends import BackendError, BackendState
from auditor.backends.availability import HUB, LoadMemory, ensure_local, looks_local, weights_detail
from auditor.config import Settings
from auditor.prompts import Prompt, grounding_prompt, reader_prompt
from auditor.recovery import BoxFormat, recover_findings, recover_mentions
from auditor.schema import DraftReading, Grounding, ModelInfo, Note, ParseOutcome, Stage

if TYPE_CHECKING:
    from auditor.images import LoadedImage

__all__ = ["HFGrounder", "HFReader", "make_grounder", "make_reader", "resolve_device"]

INSTALL_HINT: Final = "pip install 'cxr-draft-auditor[models]'"
THINK_OPEN: Final = "<think>"
THINK_CLOSE: Final = "</think>"
CLOSE_THINKING: Final = THINK_CLOSE + "\n"
"""What the reader appends when the reasoning budget runs out, before asking for the answer."""

_MAX_REASON_CHARS: Final = 300


# --- small helpers ----------------------------------------------------------------------------------


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _reason(exc: BaseException) -> str:
    """One short line from an exception: hub and torch errors can be many paragraphs long."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > _MAX_REASON_CHARS:
        text = text[: _MAX_REASON_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _is_oom(exc: BaseException) -> bool:
    """CUDA OOM arrives as ``torch.OutOfMemoryError`` or, from some kernels, a plain RuntimeError."""
    torch = sys.modules.get("torch")
    oom_type = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_cuda() -> None:
    """Return cached blocks to the driver after a failure, so the next call has room to work."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _import_stack(role: str, model_id: str) -> tuple[Any, Any]:
    """torch and transformers, or a load_failed error that says which extra to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise BackendError(
            "load_failed",
            f"cannot load the {role} model {model_id!r}: torch/transformers are not installed "
            f"({_reason(exc)}); install them with: {INSTALL_HINT}",
        ) from exc
    return torch, transformers


def resolve_device(setting: str, torch: Any) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; an explicit ``cuda`` without one is an error."""
    if setting == "cpu":
        return "cpu"
    has_cuda = bool(torch.cuda.is_available())
    if setting == "cuda" and not has_cuda:
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise BackendError(
            "device_unavailable",
            f"device 'cuda' was requested but torch {torch.__version__} ({build}) sees no CUDA device; "
            "set device to 'auto' or 'cpu' (CXR_AUDITOR_DEVICE), or run on a machine with a GPU",
        )
    return "cuda" if has_cuda else "cpu"


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_dtype(setting: str, device: str, torch: Any, *, cpu_bf16: bool | None = None) -> Any:
    """``auto``: bfloat16 on a GPU, and on a CPU that computes it natively; float32 on other CPUs.

    bfloat16 is what the checkpoints ship in, so it loads without a second, converted copy (a 4B model
    in float32 needs 16 GiB, and both models would not fit in 24 GiB); where the CPU lacks bf16
    instructions, float32 is the faster choice despite the memory.
    """
    if setting == "auto":
        if device == "cuda":
            return torch.bfloat16
        native = cpu_has_bf16() if cpu_bf16 is None else cpu_bf16
        return torch.bfloat16 if native else torch.float32
    return getattr(torch, setting)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _load_hint(model_id: str) -> str:
    """Say whether the id was read as a folder or a hub id: the fix differs."""
    if looks_local(model_id) and not os.path.exists(os.path.expanduser(model_id)):
        return " The folder does not exist."
    if not os.path.exists(os.path.expanduser(model_id)):
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        return (
            " As a hub id, its files must already be in the Hugging Face cache or the hub must be "
            f"reachable{offline}."
        )
    return ""


def _sequences(output: Any) -> Any:
    """``generate`` returns a tensor, or an object with ``.sequences`` when a config asks for a dict."""
    return getattr(output, "sequences", output)


def _generated_lengths(
    generated: Any, stop_ids: frozenset[int], stopped_after: Sequence[int | None] = ()
) -> list[int]:
    """Tokens each row generated: up to and including its first end token, or up to where the early
    stop ended it (what follows in a batch is padding)."""
    lengths = []
    for i, row in enumerate(generated.tolist()):
        ends = [j + 1 for j, tok in enumerate(row) if tok in stop_ids][:1]
        early = stopped_after[i] if i < len(stopped_after) else None
        lengths.append(min([len(row), *ends, *([early] if early is not None else [])]))
    return lengths


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    if ids is None:
        return frozenset()
    return frozenset([ids] if isinstance(ids, int) else ids)


# --- the shared part: load once, keep resident, map failures ----------------------------------------


class _HFBackend:
    """Loading, device and dtype choice, state and error mapping shared by both backends."""

    role: ClassVar[str]
    stage: ClassVar[Stage]

    def __init__(self, settings: Settings, model_id: str, revision: str | None, prompt: Prompt) -> None:
        self.settings = settings
        self.model_id = model_id
        self.revision = revision
        self.prompt = prompt
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None
        self._device: str | None = None
        self._dtype: str | None = None
        self._last_error: str | None = None

    # -- subclasses fill these in

    def _load_processor(self, transformers: Any) -> Any:
        raise NotImplementedError

    def _model_class(self, transformers: Any) -> Any:
        raise NotImplementedError

    def _prepare(self, model: Any, processor: Any) -> None:
        """Adjust a freshly loaded pair before it is published (padding side, pad token)."""

    def _dtype_setting(self) -> str:
        """The per-model dtype (``grounder_dtype`` / ``reader_dtype``) when set, else ``dtype``."""
        own = getattr(self.settings, f"{self.role}_dtype", None)
        return str(own or self.settings.dtype)

    # -- loading

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load now (``--preload``, an explicit reload); idempotent, and a remembered failure is
        forgotten first, so this always tries again."""
        self._memory.forget()
        self._ensure_loaded()

    @property
    def _memory(self) -> LoadMemory:
        """The remembered load failure (made on first use; ``setdefault`` is atomic under threads)."""
        memory: LoadMemory = self.__dict__.setdefault("_load_memory", LoadMemory(self.settings.load_retry_s))
        return memory

    def _ensure_loaded(self) -> float:
        """Load on first use; returns the milliseconds this call spent loading (0 when resident).

        Before anything heavy: a remembered failure is answered at once, and the checkpoint must be
        on disk (a folder or the cache; downloaded first only when ``allow_download``), so a missing
        model fails in milliseconds with what to do. That check is not remembered: weights fetched
        meanwhile are used by the next call. The load itself runs with the hub offline.
        """
        if self._model is not None:
            return 0.0
        with self._load_lock:
            if self._model is not None:
                return 0.0
            self._memory.check()
            started = time.perf_counter()
            try:
                ensure_local(self.role, self.model_id, self.revision, self.settings)
            except BackendError as exc:
                self._last_error = str(exc)
                raise
            stage = stage_name(self.role)
            activity.info("%s: loading %s", stage, self.model_id)
            try:
                with HUB.offline():
                    model, processor, device, dtype = self._load_parts()
            except BackendError as exc:
                failure = self._memory.remember(exc)
                self._last_error = str(failure)
                activity.error("%s: %s could not be loaded (%s)", stage, self.model_id, failure.code)
                raise failure from None
            self._memory.forget()
            self._processor, self._device, self._dtype = processor, device, _dtype_name(dtype)
            self._model = model  # published last: `loaded` means every part is ready
            self._last_error = None
            took = _ms(started)
            activity.info(
                "%s: %s loaded on %s (%s) in %.1f s", stage, self.model_id, device, self._dtype, took / 1000
            )
            return took

    def _load_parts(self) -> tuple[Any, Any, str, Any]:
        """Build model and processor into locals; on any failure drop both and raise load_failed."""
        torch, transformers = _import_stack(self.role, self.model_id)
        device = resolve_device(self.settings.device, torch)
        dtype = resolve_dtype(self._dtype_setting(), device, torch)
        attention = (
            {} if self.settings.attention == "auto" else {"attn_implementation": self.settings.attention}
        )
        self._check_room(torch, device, dtype)
        model: Any = None
        processor: Any = None
        try:
            processor = self._load_processor(transformers)
            # dtype and device_map make transformers place each tensor once, in its final dtype, on
            # its final device: no float32 detour and no second host copy while loading.
            model = self._model_class(transformers).from_pretrained(
                self.model_id, revision=self.revision, dtype=dtype, device_map=device, **attention
            )
            model.eval()
            self._prepare(model, processor)
        except Exception as exc:
            failure = self._load_error(exc)
        else:
            return model, processor, device, dtype
        # Outside the except block, so the traceback (whose frames may hold half-built weights) is
        # already gone when the memory is freed; the reason lives on in the message.
        model = processor = None
        _free_cuda()
        raise failure

    def _check_room(self, torch: Any, device: str, dtype: Any) -> None:
        """Refuse at once, with the ways out, a local checkpoint that cannot fit where it would load."""
        from auditor.backends import memory

        elements = memory.checkpoint_elements(Path(os.path.expanduser(self.model_id)))
        if elements is None:
            return
        needed = memory.bytes_needed(elements, torch.empty((), dtype=dtype).element_size())
        if device == "cuda":
            available: int | None = int(torch.cuda.mem_get_info()[0])
            where = "free GPU memory"
        else:
            available = memory.cpu_available_bytes()
            where = "available memory"
        if not memory.shortfall(needed, available):
            return
        assert available is not None
        role = self.role.upper()
        raise BackendError(
            "out_of_memory",
            f"the {self.role} model {self.model_id!r} needs about {memory.gib(needed)} in "
            f"{_dtype_name(dtype)}, but only {memory.gib(available)} of {where} is left. Ways out: free "
            "memory (or leave this model out: CXR_AUDITOR_READER=rules runs the reader without one), "
            f"load it in bfloat16 (CXR_AUDITOR_{role}_DTYPE=bfloat16), or serve it from an engine "
            f"(CXR_AUDITOR_{role}=http)",
        )

    def _load_error(self, exc: Exception) -> BackendError:
        revision = f" at revision {self.revision!r}" if self.revision else ""
        message = f"could not load the {self.role} model {self.model_id!r}{revision}: {_reason(exc)}."
        if isinstance(exc, ImportError):
            message += f" A package is missing; install the model extras: {INSTALL_HINT}"
        elif _is_oom(exc):
            message += " The GPU has too little free memory for it."
        else:
            message += _load_hint(self.model_id)
        return BackendError("load_failed", message)

    # -- running

    def _generate(self, inputs: dict[str, Any], **kwargs: Any) -> Any:
        """One ``model.generate`` call: greedy, no grad, failures mapped to BackendError codes."""
        torch = sys.modules["torch"]
        try:
            with torch.inference_mode():
                return _sequences(self._model.generate(**inputs, do_sample=False, **kwargs))
        except Exception as exc:
            failure = self._generation_error(exc)
        # Outside the except block: an OOM traceback pins the activations that did not fit.
        if failure.code == "out_of_memory":
            _free_cuda()
        raise failure

    def _generation_error(self, exc: Exception) -> BackendError:
        if _is_oom(exc):
            return BackendError(
                "out_of_memory",
                f"the {self.role} model {self.model_id!r} ran out of GPU memory while generating "
                f"({_reason(exc)}); the model stays loaded: retry with a smaller input or batch, "
                "or free GPU memory",
            )
        return BackendError(
            "generation_failed", f"the {self.role} model {self.model_id!r} failed to generate: {_reason(exc)}"
        )

    def _device_notes(self) -> list[Note]:
        """Running a 4B model on CPU works but is slow enough to look like a hang: say so."""
        if self._device != "cpu":
            return []
        return [
            Note(
                stage=self.stage,
                code="cpu_slow",
                message=f"The {self.role} model runs on CPU: with the real 4B weights one generation takes "
                "minutes (seconds on a GPU).",
            )
        ]

    def _model_info(self) -> ModelInfo:
        return ModelInfo(
            backend="hf",
            model_id=self.model_id,
            revision=self.revision,
            prompt_version=self.prompt.version,
            device=self._device,
        )

    def state(self) -> BackendState:
        """Loaded or not, device, dtype, GPU memory; never imports torch (reads sys.modules only)."""
        detail: dict[str, object] = {
            "dtype": self._dtype or self._dtype_setting(),
            "device_setting": self.settings.device,
            "revision": self.revision,
            "prompt_version": self.prompt.version,
        }
        if not self.loaded:
            detail |= weights_detail(self.role, self.model_id, self.revision, self.settings)
        torch = sys.modules.get("torch")
        if self.loaded and self._device == "cuda" and torch is not None:
            detail["cuda_memory_allocated_bytes"] = int(torch.cuda.memory_allocated())
            detail["cuda_device_name"] = str(torch.cuda.get_device_name())
        if self._last_error is not None:
            detail["last_error"] = self._last_error
        retry = self._memory.retry_in_s()
        if retry is not None:
            detail["retry_load_in_s"] = retry
        return BackendState(
            role=self.role,
            backend="hf",
            model_id=self.model_id,
            loaded=self.loaded,
            device=self._device or self.settings.device,
            detail=detail,
        )


# --- the grounder -----------------------------------------------------------------------------------


class HFGrounder(_HFBackend):
    """MedGemma (Gemma3 image-text-to-text) grounding the audit labels with boxes."""

    role = "grounder"
    stage = "image"

    def __init__(self, settings: Settings) -> None:
        self.box_format = BoxFormat(order=settings.box_order, scale=settings.box_scale)
        prompt = grounding_prompt(self.box_format, settings.grounder_prompt)
        super().__init__(settings, settings.grounder_model, settings.grounder_revision, prompt)

    def _load_processor(self, transformers: Any) -> Any:
        return transformers.AutoProcessor.from_pretrained(self.model_id, revision=self.revision)

    def _model_class(self, transformers: Any) -> Any:
        return transformers.AutoModelForImageTextToText

    def _prepare(self, model: Any, processor: Any) -> None:
        """Left padding, so every row of a batch ends at the prompt and generation appends cleanly."""
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def ground(self, image: LoadedImage) -> Grounding:
        """One image -> one Grounding (the batch path with a batch of one)."""
        return self.ground_batch([image])[0]

    def ground_batch(self, images: Sequence[LoadedImage]) -> list[Grounding]:
        """Ground several images in one ``generate`` (left-padded); results in input order.

        ``preprocess`` and ``generate`` timings are those of the whole batch, repeated on each result.
        """
        if not images:
            return []
        load_ms = self._ensure_loaded()
        with self._run_lock:
            started = time.perf_counter()
            inputs = self._encode(images)
            prompt_len = int(inputs["input_ids"].shape[1])
            preprocess_ms = _ms(started)
            started = time.perf_counter()
            clock, closed, criteria = self._criteria(prompt_len)
            sequences = self._generate(
                inputs,
                max_new_tokens=self.settings.grounder_max_new_tokens,
                pad_token_id=self._processor.tokenizer.pad_token_id,
                stopping_criteria=criteria,
                **self._cache_options(),
            )
            generate_ms = _ms(started)
            generated = sequences[:, prompt_len:]
            texts = self._processor.batch_decode(generated, skip_special_tokens=True)
            stops = _eos_ids(self._model, self._processor.tokenizer)
            lengths = _generated_lengths(generated, stops, closed.stopped_after if closed else ())
        timings = {
            "load": load_ms,
            "preprocess": preprocess_ms,
            "generate": generate_ms,
            **clock.timings_ms(),
        }
        return [
            self._grounding(image, str(text), timings, {"prompt": prompt_len, "generated": n})
            for image, text, n in zip(images, texts, lengths, strict=True)
        ]

    def _criteria(self, prompt_len: int) -> tuple[Any, Any, Any]:
        """The step clock, the early stop once the JSON answer has closed (``grounding_stop_at_end``;
        None when off), and both as the list ``generate`` takes."""
        from transformers import StoppingCriteriaList

        from auditor.backends.hf_generation import JsonAnswerClosed, StepClock

        clock = StepClock()
        closed = None
        if self.settings.grounding_stop_at_end:
            tokenizer = self._processor.tokenizer
            closed = JsonAnswerClosed(
                lambda i: str(tokenizer.decode([i], skip_special_tokens=True)), prompt_len
            )
        return clock, closed, StoppingCriteriaList([clock, *([closed] if closed else [])])

    def _cache_options(self) -> dict[str, Any]:
        """A static KV cache (``static_cache``), compiled on a GPU only when ``compile`` asks for it."""
        if not (self.settings.static_cache or self.settings.compile):
            return {}
        return {"cache_implementation": "static", "disable_compile": not self.settings.compile}

    def _encode(self, images: Sequence[LoadedImage]) -> Any:
        """The checkpoint's own chat template with the image, tokenised and moved to the model."""
        conversations = [
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": image.rgb()},
                        {"type": "text", "text": self.prompt.text},
                    ],
                }
            ]
            for image in images
        ]
        inputs = self._processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        return inputs.to(self._model.device, dtype=self._model.dtype)

    def _grounding(
        self, image: LoadedImage, raw: str, timings: dict[str, float], tokens: dict[str, int]
    ) -> Grounding:
        started = time.perf_counter()
        recovered = recover_findings(raw, self.box_format)
        return Grounding(
            findings=recovered.findings,
            outcome=recovered.outcome,
            model=self._model_info(),
            image=image.info,
            raw_output=raw,
            notes=[*image.notes, *recovered.notes, *self._device_notes()],
            timings_ms={**timings, "recovery": _ms(started)},
            tokens=tokens,
        )


# --- the draft reader -------------------------------------------------------------------------------


class HFReader(_HFBackend):
    """Nemotron (``nemotron_h``) reading a draft into labelled, verbatim-span mentions."""

    role = "reader"
    stage = "draft"

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, settings.reader_model, settings.reader_revision, reader_prompt(settings.reader_prompt)
        )
        self._drop_ids: frozenset[int] = frozenset()
        self._close_id: int | None = None

    def _load_processor(self, transformers: Any) -> Any:
        return transformers.AutoTokenizer.from_pretrained(self.model_id, revision=self.revision)

    def _model_class(self, transformers: Any) -> Any:
        return transformers.AutoModelForCausalLM

    def _prepare(self, model: Any, tokenizer: Any) -> None:
        """Work out which special tokens to hide when decoding: all but the think tags, which
        recovery needs to find the end of the reasoning (``skip_special_tokens`` would drop them)."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        special = {int(i) for i, tok in added.items() if getattr(tok, "special", False)}
        special |= {int(i) for i in tokenizer.all_special_ids}
        think = {int(i) for i in tokenizer.convert_tokens_to_ids([THINK_OPEN, THINK_CLOSE]) if i is not None}
        think.discard(tokenizer.unk_token_id)
        self._drop_ids = frozenset(special - think)
        close = tokenizer.encode(THINK_CLOSE, add_special_tokens=False)
        self._close_id = int(close[0]) if len(close) == 1 and close[0] != tokenizer.unk_token_id else None

    def read(self, draft: str) -> DraftReading:
        """Draft -> DraftReading; an empty draft is answered without touching the model."""
        if not draft.strip():
            return DraftReading(
                draft=draft,
                mentions=[],
                outcome=ParseOutcome.FAILED,
                model=self._model_info(),
                notes=[
                    Note(
                        stage="draft",
                        code="draft_empty",
                        message="The draft is empty: there is nothing to read.",
                    )
                ],
            )
        load_ms = self._ensure_loaded()
        with self._run_lock:
            started = time.perf_counter()
            inputs = self._encode(draft)
            preprocess_ms = _ms(started)
            started = time.perf_counter()
            new_ids, notes, phase_ms, tokens = self._generate_answer(inputs)
            generate_ms = _ms(started)
            raw = self._decode(new_ids)
        started = time.perf_counter()
        recovered = recover_mentions(raw, draft)
        return DraftReading(
            draft=draft,
            mentions=recovered.mentions,
            outcome=recovered.outcome,
            model=self._model_info(),
            raw_output=raw,
            notes=[*notes, *recovered.notes, *self._device_notes()],
            timings_ms={
                "load": load_ms,
                "preprocess": preprocess_ms,
                "generate": generate_ms,
                **phase_ms,
                "recovery": _ms(started),
            },
            tokens=tokens,
        )

    def _encode(self, draft: str) -> dict[str, Any]:
        """System prompt + the draft verbatim as the user turn, through the checkpoint's template.

        ``sanitize_control_tokens`` makes chat markers typed into a draft plain text, so a draft
        cannot end its own turn and speak as the assistant.
        """
        messages = [
            {"role": "system", "content": self.prompt.text},
            {"role": "user", "content": draft},
        ]
        encoded = self._processor.apply_chat_template(
            messages,
            add_generation_prompt=True,
            enable_thinking=self.settings.reader_reasoning,
            sanitize_control_tokens=True,
            return_dict=True,
            return_tensors="pt",
        )
        device = self._model.device
        return {
            "input_ids": encoded["input_ids"].to(device),
            "attention_mask": encoded["attention_mask"].to(device),
        }

    def _generate_answer(
        self, inputs: dict[str, Any]
    ) -> tuple[Any, list[Note], dict[str, float], dict[str, int]]:
        """The new token ids (1-D) of the whole generation, reasoning included, any notes, and the
        prefill/decode time and token count of each phase.

        Without reasoning: one generate. With it: phase 1 thinks for at most the budget and stops at
        ``</think>``; if the trace is still open, ``</think>\\n`` is appended for the model; phase 2
        continues from the full sequence (re-prefilled, which is cheap next to the decode) and writes
        the answer with ``reader_max_new_tokens``.
        """
        prompt_len = int(inputs["input_ids"].shape[1])
        answer_budget = self.settings.reader_max_new_tokens
        pad = {"pad_token_id": self._processor.pad_token_id}
        timings: dict[str, float] = {}
        tokens = {"prompt": prompt_len}
        if not self.settings.reader_reasoning:
            sequence = self._timed("answer", timings, inputs, max_new_tokens=answer_budget, **pad)
            tokens["answer"] = int(sequence.shape[1]) - prompt_len
            return sequence[0, prompt_len:], [], timings, tokens
        budget = self.settings.reader_reasoning_budget
        sequence = inputs["input_ids"]
        if budget > 0:
            sequence = self._timed(
                "reasoning", timings, inputs, max_new_tokens=budget, **self._think_stop(), **pad
            )
        tokens["reasoning"] = int(sequence.shape[1]) - prompt_len
        sequence, notes, finished = self._after_thinking(sequence, prompt_len, budget)
        if not finished:
            torch = sys.modules["torch"]
            before = int(sequence.shape[1])
            cont = {"input_ids": sequence, "attention_mask": torch.ones_like(sequence)}
            sequence = self._timed("answer", timings, cont, max_new_tokens=answer_budget, **pad)
            tokens["answer"] = int(sequence.shape[1]) - before
        return sequence[0, prompt_len:], notes, timings, tokens

    def _timed(self, phase: str, timings: dict[str, float], inputs: dict[str, Any], **kwargs: Any) -> Any:
        """One generate with a step clock; its prefill and decode times land in ``timings``."""
        from transformers import StoppingCriteriaList

        from auditor.backends.hf_generation import StepClock

        clock = StepClock()
        sequence = self._generate(inputs, stopping_criteria=StoppingCriteriaList([clock]), **kwargs)
        timings.update({f"{phase}_{key}": value for key, value in clock.timings_ms().items()})
        return sequence

    def _think_stop(self) -> dict[str, Any]:
        """How phase 1 stops at ``</think>``: by token id where the tag is one token (as in the real
        tokenizer: a free check), else by ``stop_strings`` (a text match at every step)."""
        if self._close_id is None:
            return {"stop_strings": [THINK_CLOSE], "tokenizer": self._processor}
        return {"eos_token_id": sorted(_eos_ids(self._model, self._processor) | {self._close_id})}

    def _after_thinking(self, sequence: Any, prompt_len: int, budget: int) -> tuple[Any, list[Note], bool]:
        """Decide how phase 2 starts: closed trace -> answer; open trace -> close it first; a model that
        never opened a trace and already stopped -> its text was the answer (finished)."""
        thought = sequence[0, prompt_len:]
        text = self._processor.decode(thought, skip_special_tokens=False)
        ended = len(thought) > 0 and int(thought[-1]) in _eos_ids(self._model, self._processor)
        if THINK_CLOSE in text:
            # Closed. If the model also answered and ended its turn (a close tag written in several
            # pieces does not stop phase 1 by id), that answer is the generation: no phase 2. If it
            # ended its turn with no answer, the end token goes and phase 2 asks for the answer.
            if ended and self._decode(thought).split(THINK_CLOSE)[-1].strip():
                return sequence, [], True
            while ended and int(sequence[0, -1]) in _eos_ids(self._model, self._processor):
                sequence = sequence[:, :-1]
            return sequence, [], False
        prompt_tail = self._processor.decode(sequence[0, max(prompt_len - 8, 0) : prompt_len])
        opened = prompt_tail.rstrip().endswith(THINK_OPEN) or THINK_OPEN in text
        if not opened:
            return sequence, [], ended
        while sequence.shape[1] > prompt_len and int(sequence[0, -1]) in _eos_ids(
            self._model, self._processor
        ):
            sequence = sequence[:, :-1]
        torch = sys.modules["torch"]
        close_ids = self._processor.encode(CLOSE_THINKING, add_special_tokens=False)
        close = torch.tensor([close_ids], dtype=sequence.dtype, device=sequence.device)
        why = (
            f"the reasoning reached its budget of {budget} tokens"
            if not ended
            else "the model stopped without closing its reasoning"
        )
        code = "reasoning_budget_reached" if not ended else "reasoning_unclosed"
        note = Note(
            stage="draft", code=code, message=f"{why}; it was closed and the answer generated after it."
        )
        return torch.cat([sequence, close], dim=1), [note], False

    def _decode(self, new_ids: Any) -> str:
        """The generation as text with its think tags kept and every other special token removed."""
        kept = [int(i) for i in new_ids.tolist() if int(i) not in self._drop_ids]
        return str(self._processor.decode(kept, skip_special_tokens=False))


# --- factory entry points ---------------------------------------------------------------------------


def make_grounder(settings: Settings) -> HFGrounder:
    """Called by ``auditor.backends.factory``; nothing is loaded until first use or ``load()``."""
    return HFGrounder(settings)


def make_reader(settings: Settings) -> HFReader:
    """Called by ``auditor.backends.factory``; nothing is loaded until first use or ``load()``."""
    return HFReader(settings)
