"""Random-weight checkpoints of the two real architectures, written offline, at two sizes.

Why: no machine we test on reaches the Hugging Face hub, yet the backends must be proven on the real
architectures. A checkpoint folder written here loads through exactly the code a user's weights go
through (``from_pretrained``, the processor, the chat template, ``generate``, recovery). Its outputs are
random text, which is the point: recovery must turn them into a visible FAILED/RECOVERED outcome.

- ``tiny``: a few MB, seconds to build; the tests use it.
- ``real``: MedGemma 4B's shape (Gemma3 text 2560 x 34 layers, SigLIP 896 px, 256 image tokens,
  vocabulary 262,208: 4.30 B parameters) and Nemotron-3 Nano 4B's (``nemotron_h``, 42 layers, hidden
  3136, vocabulary 131,072: 3.97 B parameters), written in bf16 safetensors (about 8 GB each, minutes
  to build); the benchmarks use it. The tokenizers are trained in memory on a tiny corpus and padded
  with filler pieces up to the real vocabulary sizes, so every id a random model emits decodes.

``force_tokens`` writes a ``generation_config.json`` with ``min_new_tokens`` so that end tokens are
suppressed and every generation runs to its budget: timings then do not depend on when random weights
happen to stop. Sizes of the real models are as published (MedGemma 1.5 4B config; NVIDIA's recipe
for NVIDIA-Nemotron-3-Nano-4B-BF16); the Nemotron conv kernel (4) is assumed.

torch, tokenizers and transformers are imported inside the functions: this module is importable
without the ``models`` extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal

Size = Literal["tiny", "real"]

GEMMA_SPECIALS: Final = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]
NEMOTRON_SPECIALS: Final = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CORPUS: Final = [
    '[{"label": "pleural_effusion", "box_2d": [0.61, 0.12, 0.88, 0.45]}, {"label": "no_finding"}]',
    "Frontal chest radiograph. No focal consolidation, pleural effusion or pneumothorax.",
    "Cardiomediastinal silhouette is within normal limits. Mild cardiomegaly. Right upper lobe nodule.",
    '[{"label": "cardiomegaly", "status": "present", "span": "Mild cardiomegaly"}]',
] * 20

GEMMA3_TEMPLATE: Final = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}{%- else -%}"
    "{%- for item in message['content'] -%}{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}"
    "{%- endif -%}"
)

CHATML_THINKING: Final = (
    "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking %}{{ '<think></think>' }}"
    "{%- else %}{{ '<think>\n' }}{%- endif %}{%- endif %}"
)

NEMOTRON_PATTERN: Final = "M-M-M-MM-M-M*-M-M*-M-M-M*-M-M-MM*-MMM-M-M-"
"""The published 42-layer layout: M Mamba2, * attention, - MLP."""
_BLOCK_KIND: Final = {"M": "linear_attention", "*": "full_attention", "-": "mlp"}

REAL_GEMMA_VOCAB: Final = 262_208
REAL_NEMOTRON_VOCAB: Final = 131_072
TINY_IMAGE_SIZE: Final = 64


# --- tokenizers -------------------------------------------------------------------------------------


def _pad_vocabulary(tokenizer_object: Any, size: int) -> Any:
    """Extend a trained BPE's vocabulary with unreachable filler pieces up to ``size`` ids.

    The fillers are ordinary vocabulary (not added tokens), so encoding never produces them and the
    tokenizer stays fast, but every id a random model emits decodes to some text.
    """
    from tokenizers import Tokenizer

    data = json.loads(tokenizer_object.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    taken = len(vocab) + sum(1 for t in data["added_tokens"] if t["content"] not in vocab)
    next_id = max([*vocab.values(), *(t["id"] for t in data["added_tokens"])]) + 1
    for i in range(size - taken):
        vocab[f"\u2047fill{i}\u2047"] = next_id + i
    return Tokenizer.from_str(json.dumps(data))


def gemma_tokenizer(size: Size) -> Any:
    """A SentencePiece-like BPE with Gemma3's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tk.normalizer = normalizers.Replace(" ", "▁")
    tk.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    if size == "tiny":
        specials, alphabet = GEMMA_SPECIALS + byte_tokens, ["▁"]
    else:  # byte pieces are ordinary vocabulary in the real tokenizer
        specials, alphabet = GEMMA_SPECIALS, ["▁", *byte_tokens]
    tk.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=700, special_tokens=specials, initial_alphabet=alphabet)
    )
    if size == "real":
        tk = _pad_vocabulary(tk, REAL_GEMMA_VOCAB)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        padding_side="left",
        add_bos_token=True,
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        chat_template=GEMMA3_TEMPLATE,
    )


def nemotron_tokenizer(size: Size) -> Any:
    """A byte-level BPE with ChatML markers and single-token think tags, as the real one has."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=500,
            special_tokens=NEMOTRON_SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    if size == "real":
        tk = _pad_vocabulary(tk, REAL_NEMOTRON_VOCAB)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tk,
        bos_token="<s>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<unk>",
        chat_template=CHATML_THINKING,
    )


# --- configs ----------------------------------------------------------------------------------------


def gemma3_config(size: Size, tok: Any, image_size: int | None = None) -> Any:
    """MedGemma's architecture; special token ids come from ``tok`` so config and tokenizer agree."""
    from transformers import Gemma3Config

    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    ids = dict(
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=[tok.eos_token_id, end_of_turn],
    )
    if size == "tiny":
        side = image_size or TINY_IMAGE_SIZE
        text: dict[str, Any] = dict(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=32,
            layer_types=["sliding_attention", "full_attention"],
            max_position_embeddings=1024,
        )
        vision: dict[str, Any] = dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8
        )
        mm_tokens = 16
    else:
        side = 896
        text = dict(
            vocab_size=REAL_GEMMA_VOCAB,
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
        )
        vision = dict(
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=27,
            num_attention_heads=16,
            patch_size=14,
        )
        mm_tokens = 256
    return Gemma3Config(
        text_config={**text, **ids},
        vision_config=dict(
            model_type="siglip_vision_model", image_size=side, vision_use_head=False, **vision
        ),
        mm_tokens_per_image=mm_tokens,
        image_token_index=tok.image_token_id,
        boi_token_index=tok.boi_token_id,
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
    )


def nemotron_config(size: Size, tok: Any) -> Any:
    """Nemotron-H (Mamba2 + attention + MLP); the real layout is ``NEMOTRON_PATTERN``."""
    from transformers import NemotronHConfig

    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if size == "tiny":
        shape: dict[str, Any] = dict(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            layers_block_type=["linear_attention", "mlp", "full_attention", "mlp", "linear_attention", "mlp"],
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            mamba_num_heads=8,
            mamba_head_dim=16,
            n_groups=2,
            ssm_state_size=16,
            chunk_size=16,
            max_position_embeddings=2048,
        )
    else:
        shape = dict(
            vocab_size=REAL_NEMOTRON_VOCAB,
            hidden_size=3136,
            intermediate_size=12_544,
            layers_block_type=[_BLOCK_KIND[c] for c in NEMOTRON_PATTERN],
            num_attention_heads=40,
            num_key_value_heads=8,
            head_dim=128,
            mamba_num_heads=96,
            mamba_head_dim=80,
            n_groups=8,
            ssm_state_size=128,
            chunk_size=256,
            tie_word_embeddings=False,
            max_position_embeddings=262_144,
        )
    return NemotronHConfig(conv_kernel=4, **shape, **ids)


# --- writers ----------------------------------------------------------------------------------------


def _build(model_class: Any, config: Any, dtype: Any, device: str) -> Any:
    """Random weights built straight in the target dtype and on the target device (no float32
    detour, no host copy: half the memory, and seconds instead of minutes on a GPU)."""
    import torch

    torch.manual_seed(0)
    with torch.device(device):
        return model_class._from_config(config, dtype=dtype).eval()


def force_length(out: Path, force_tokens: int | None) -> None:
    """Set ``min_new_tokens`` in the folder's ``generation_config.json`` (end tokens suppressed, every
    generation runs to its budget); None leaves the folder as it is."""
    if force_tokens is None:
        return
    path = out / "generation_config.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data["min_new_tokens"] = force_tokens
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def write_grounder(
    out: Path,
    size: Size = "tiny",
    *,
    image_size: int | None = None,
    force_tokens: int | None = None,
    device: str = "cpu",
) -> Path:
    """Save a random MedGemma-architecture model and its processor to ``out``; returns ``out``."""
    import torch
    from transformers import Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    tok = gemma_tokenizer(size)
    config = gemma3_config(size, tok, image_size)
    side = config.vision_config.image_size
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": side, "width": side}),
        tokenizer=tok,
        chat_template=GEMMA3_TEMPLATE,
        image_seq_length=config.mm_tokens_per_image,
    )
    dtype = torch.float32 if size == "tiny" else torch.bfloat16
    model = _build(Gemma3ForConditionalGeneration, config, dtype, device)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    force_length(out, force_tokens)
    return out


def write_reader(
    out: Path, size: Size = "tiny", *, force_tokens: int | None = None, device: str = "cpu"
) -> Path:
    """Save a random Nemotron-H model and a thinking-aware tokenizer to ``out``; returns ``out``."""
    import torch
    from transformers import NemotronHForCausalLM

    tok = nemotron_tokenizer(size)
    dtype = torch.float32 if size == "tiny" else torch.bfloat16
    model = _build(NemotronHForCausalLM, nemotron_config(size, tok), dtype, device)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    force_length(out, force_tokens)
    return out


def parameter_count(folder: Path) -> int:
    """Parameters stored in a checkpoint folder, read from its safetensors headers (no weights loaded)."""
    from auditor.backends.memory import checkpoint_elements

    elements = checkpoint_elements(folder)
    if elements is None:
        raise ValueError(f"{folder} holds no readable safetensors checkpoint")
    return sum(elements.values())
