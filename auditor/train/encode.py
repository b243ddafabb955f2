"""A record -> the tensors of one training example, with the loss on the assistant turn only.

The prompt half is encoded exactly as `auditor.backends.hf.HFGrounder` encodes it at serving time (the
checkpoint's own chat template with the image, generation prompt added), so the fine-tune learns to
continue the very token sequence it will be given. The assistant half is what the template puts after
that prompt (the target JSON and the end-of-turn marker), tokenised on its own and appended; its
tokens carry the labels, every prompt and image token is masked with -100. torch is imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from auditor.train.records import SftRecord

IGNORE: Final = -100
"""The label value the cross-entropy loss skips."""


def conversation(record: SftRecord, image: Any, *, with_answer: bool) -> list[dict[str, Any]]:
    """The user turn as HFGrounder sends it (image, then the prompt), and the answer when asked."""
    turns: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": record.prompt}],
        }
    ]
    if with_answer:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": record.target()}]})
    return turns


def answer_text(processor: Any, record: SftRecord) -> str:
    """What the chat template writes after the generation prompt: the target and its end-of-turn
    marker (trailing newlines dropped: nothing is generated after the end token)."""
    prompt = processor.apply_chat_template(
        [conversation(record, None, with_answer=False)], add_generation_prompt=True, tokenize=False
    )[0]
    full = processor.apply_chat_template(
        [conversation(record, None, with_answer=True)], add_generation_prompt=False, tokenize=False
    )[0]
    if not full.startswith(prompt):
        raise ValueError(
            "the chat template renders the answer turn differently from the generation prompt; "
            "the assistant turn cannot be isolated for the loss"
        )
    answer = str(full[len(prompt) :]).rstrip("\n")
    if record.target() not in answer:
        raise ValueError("the chat template changed the target text; refusing to train on it")
    return answer


def encode(processor: Any, record: SftRecord, image: Any | None = None) -> dict[str, Any]:
    """Tensors of one example, batch of one: input_ids, attention_mask, labels, and whatever else the
    processor gives for the image (pixel_values, token_type_ids)."""
    import torch

    if image is None:
        image = load_rgb(record.image)
    prompt = processor.apply_chat_template(
        [conversation(record, image, with_answer=False)],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    answer = processor.tokenizer(answer_text(processor, record), add_special_tokens=False)["input_ids"]
    tail = torch.tensor([answer], dtype=prompt["input_ids"].dtype)
    batch = dict(prompt)
    batch["input_ids"] = torch.cat([prompt["input_ids"], tail], dim=1)
    batch["attention_mask"] = torch.cat([prompt["attention_mask"], torch.ones_like(tail)], dim=1)
    if "token_type_ids" in prompt:  # 1 marks image tokens; the answer is text
        batch["token_type_ids"] = torch.cat([prompt["token_type_ids"], torch.zeros_like(tail)], dim=1)
    labels = torch.full_like(batch["input_ids"], IGNORE)
    labels[:, prompt["input_ids"].shape[1] :] = tail
    batch["labels"] = labels
    return batch


def load_rgb(path: str | Path) -> Any:
    """The image through the server's own loader (bit depth, orientation, alpha), as RGB."""
    from auditor.images import load_image

    return load_image(Path(path)).rgb()
