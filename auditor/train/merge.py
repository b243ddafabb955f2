"""`train merge` and `train verify-merge`: fold the adapter into a clean copy of the base, and prove it.

The trap (the write-up's): a merge that silently does nothing publishes the unchanged base under the
fine-tune's name, and every later evaluation scores the wrong model. So the merge is checked against
the adapter itself, not against the code path that merged it:

- the adapter's own tensors give each targeted weight's expected change, ``delta = B @ A * scaling``;
- the merged folder, reloaded from disk, must equal ``base + delta`` in every targeted weight (within
  the rounding of its dtype), and every other weight must equal the base exactly;
- where a change is large enough to be told apart from rounding ("visible"), an unmerged copy fails
  at once; an adapter whose change is visible nowhere (untrained, or below bf16 precision) fails too,
  because then nothing would tell a merged model from the base.

The merge is written to ``OUT.partial`` and renamed to ``OUT`` only once the check passes; a failed one
stays at ``OUT.partial`` with its ``merge.json`` for inspection. The base is always loaded afresh in
bf16 (never the 4-bit copy QLoRA trained on). Verification holds base and merged model in memory at
once: about 17 GB of RAM for the 4B grounder.
"""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from auditor.train.sft import RUN_FILE, TrainError, sha256_of, training_stack

ADAPTER_PREFIX: Final = "base_model.model."
MERGE_FILE: Final = "merge.json"
VISIBLE_MARGIN: Final = 2.0
"""A change is visible when it exceeds the rounding tolerance this many times over."""


class MergeError(Exception):
    """The merged folder is not base + adapter: never serve or publish it."""


@dataclass(frozen=True)
class ModuleCheck:
    weight: str
    elements: int
    visible: int
    """Elements whose expected change is larger than rounding at the merged dtype."""
    mismatched: int
    """Elements that differ from base + delta by more than rounding."""
    max_error: float

    def as_json(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "elements": self.elements,
            "visible_changes": self.visible,
            "mismatched": self.mismatched,
            "max_error": self.max_error,
        }


@dataclass
class MergeCheck:
    dtype: str
    modules: list[ModuleCheck] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed_outside: list[str] = field(default_factory=list)
    lora_left: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        wrong = [m for m in self.modules if m.mismatched]
        if wrong:
            worst = max(wrong, key=lambda m: m.mismatched)
            out.append(
                f"{len(wrong)} of {len(self.modules)} targeted weights are not base + adapter "
                f"(worst: {worst.weight}, {worst.mismatched} of {worst.elements} elements off by up to "
                f"{worst.max_error:.3g}); an unmerged or partly merged copy looks like this"
            )
        if self.modules and not any(m.visible for m in self.modules):
            out.append(
                f"the adapter changes no element visibly at {self.dtype}: it is untrained, or its change "
                "is below this precision, so a merged model cannot be told from the base"
            )
        if not self.modules:
            out.append("the adapter holds no LoRA weights")
        if self.missing:
            out.append(
                f"{len(self.missing)} targeted weights are absent from the merged model: {self.missing[:3]}"
            )
        if self.changed_outside:
            out.append(
                f"{len(self.changed_outside)} weights outside the adapter changed: {self.changed_outside[:3]}"
            )
        if self.lora_left:
            out.append(f"the merged model still holds LoRA layers: {self.lora_left[:3]}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def raise_if_failed(self, what: str) -> None:
        problems = self.problems()
        if problems:
            raise MergeError(f"{what}: merge check FAILED: " + "; ".join(problems))

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems(),
            "dtype": self.dtype,
            "targeted_weights": len(self.modules),
            "weights_with_visible_change": sum(1 for m in self.modules if m.visible),
            "visible_changes": sum(m.visible for m in self.modules),
            "mismatched": sum(m.mismatched for m in self.modules),
            "missing": self.missing,
            "changed_outside": self.changed_outside,
            "lora_left": self.lora_left,
            "modules": [m.as_json() for m in self.modules],
        }


# --- the check itself: pure tensor arithmetic --------------------------------------------------------


def compare_weights(
    base: Mapping[str, Any], merged: Mapping[str, Any], deltas: Mapping[str, Any], dtype_name: str
) -> MergeCheck:
    """Check ``merged == base + delta`` on every targeted weight and ``merged == base`` elsewhere.

    Tolerance per element is the rounding of the merged dtype, ``eps * (|expected| + |delta|)``: the
    delta is rounded once to the dtype and the sum once more. Merged weights are compared in float32.
    """
    torch, _, _ = training_stack()
    check = MergeCheck(dtype=dtype_name)
    for name in sorted(deltas):
        if name not in merged or name not in base:
            check.missing.append(name)
            continue
        m = merged[name].detach().float().cpu()
        b = base[name].detach().float().cpu()
        d = deltas[name].detach().float().cpu()
        eps = torch.finfo(merged[name].dtype).eps
        expected = b + d
        tol = eps * (expected.abs() + d.abs())
        error = (m - expected).abs()
        visible = d.abs() > VISIBLE_MARGIN * tol
        check.modules.append(
            ModuleCheck(
                weight=name,
                elements=int(d.numel()),
                visible=int(visible.sum()),
                mismatched=int((error > tol).sum()),
                max_error=float(error.max()) if error.numel() else 0.0,
            )
        )
    for name, tensor in merged.items():
        if "lora_" in name:
            check.lora_left.append(name)
        elif name not in deltas and name in base and not torch.equal(tensor.cpu(), base[name].cpu()):
            check.changed_outside.append(name)
    return check


class AdapterDeltas(Mapping[str, Any]):
    """Each targeted weight's expected change, ``B @ A * scaling``, from the adapter files alone.

    Computed per weight when asked for: all of them at once, in float32, would take about as much
    memory as the 4B model itself.
    """

    def __init__(self, adapter: Path) -> None:
        training_stack()
        from safetensors.torch import load_file

        config_path, weights_path = adapter / "adapter_config.json", adapter / "adapter_model.safetensors"
        if not (config_path.is_file() and weights_path.is_file()):
            raise TrainError(
                f"{adapter}: not a LoRA adapter folder (adapter_config.json, adapter_model.safetensors)"
            )
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("peft_type") != "LORA" or config.get("use_dora"):
            raise TrainError(
                f"{adapter}: only plain LoRA adapters can be verified, got {config.get('peft_type')}"
            )
        if config.get("rank_pattern") or config.get("alpha_pattern"):
            raise TrainError(f"{adapter}: per-module ranks are not supported by the check")
        r, alpha = int(config["r"]), float(config["lora_alpha"])
        self.scaling = alpha / (r**0.5) if config.get("use_rslora") else alpha / r
        self.transposed = bool(config.get("fan_in_fan_out"))
        self.tensors = load_file(str(weights_path))
        self.keys_a = {
            key.removeprefix(ADAPTER_PREFIX).removesuffix(".lora_A.weight") + ".weight": key
            for key in self.tensors
            if key.endswith(".lora_A.weight")
        }

    def __getitem__(self, weight: str) -> Any:
        key = self.keys_a[weight]
        a, b = self.tensors[key], self.tensors[key.replace(".lora_A.", ".lora_B.")]
        delta = (b.float() @ a.float()) * self.scaling
        return delta.T if self.transposed else delta

    def __contains__(self, weight: object) -> bool:
        return weight in self.keys_a  # without computing the delta, as Mapping's default would

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_a)

    def __len__(self) -> int:
        return len(self.keys_a)


# --- with the models ---------------------------------------------------------------------------------


def _load(path: str, dtype: str, revision: str | None = None) -> Any:
    torch, transformers, _ = training_stack()
    try:
        return transformers.AutoModelForImageTextToText.from_pretrained(
            path, dtype=getattr(torch, dtype), device_map="cpu", revision=revision
        )
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load {path!r}: {exc}") from None


def verify_merge(
    base: str, adapter: Path, merged: Path, *, dtype: str = "bfloat16", revision: str | None = None
) -> MergeCheck:
    """Reload the base and the merged folder and compare them weight by weight against the adapter."""
    deltas = AdapterDeltas(adapter)
    base_model = _load(base, dtype, revision)
    merged_model = _load(str(merged), dtype)
    base_state = dict(base_model.named_parameters())
    merged_state = dict(merged_model.named_parameters())
    return compare_weights(base_state, merged_state, deltas, dtype)


def _run_record(adapter: Path) -> dict[str, Any] | None:
    """The training run's record beside the adapter (prompt version, box format, data), if any."""
    path = adapter.parent / RUN_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def merge(
    base: str,
    adapter: Path,
    out: Path,
    *,
    dtype: str = "bfloat16",
    revision: str | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> MergeCheck:
    """Merge into ``OUT.partial``, verify from disk, then rename to ``OUT``; raises MergeError on failure."""
    torch, transformers, peft = training_stack()
    if out.exists():
        raise TrainError(f"{out} already exists; merge into a new folder")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    say(f"merging {adapter} into a {dtype} copy of {base}")
    model = _load(base, dtype, revision)
    processor = transformers.AutoProcessor.from_pretrained(base, revision=revision)
    merged = peft.PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(partial)
    processor.save_pretrained(partial)
    del model, merged
    gc.collect()
    say(f"verifying {partial} against the base and the adapter")
    check = verify_merge(base, adapter, partial, dtype=dtype, revision=revision)
    record = {
        "base": base,
        "revision": revision,
        "adapter": str(adapter),
        "adapter_sha256": sha256_of(adapter / "adapter_model.safetensors"),
        "dtype": dtype,
        "trained": _run_record(adapter),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "check": check.as_json(),
    }
    (partial / MERGE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    check.raise_if_failed(str(partial))
    partial.rename(out)
    return check
