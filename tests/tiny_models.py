"""Tiny random models of the two real architectures, built offline (no hub), for testing the real
backend code: Gemma3ForConditionalGeneration with a SigLIP tower and a Gemma3Processor (MedGemma's
architecture), and NemotronHForCausalLM (Mamba2 + attention + MLP) with a chat template that honours
``enable_thinking``. Their outputs are random text: the point is that loading, templating,
generation and recovery run for real and never crash. The builders live in
``auditor.testing.checkpoints``, which also writes the real-size checkpoints the benchmarks use.
"""

from __future__ import annotations

from pathlib import Path

from auditor.testing.checkpoints import CHATML_THINKING, CORPUS, GEMMA3_TEMPLATE, write_grounder, write_reader

__all__ = ["CHATML_THINKING", "CORPUS", "GEMMA3_TEMPLATE", "build_tiny_gemma3", "build_tiny_nemotron"]


def build_tiny_gemma3(out: Path, image_size: int = 64) -> Path:
    """Save a tiny random MedGemma-architecture model and its processor to ``out``."""
    return write_grounder(out, "tiny", image_size=image_size)


def build_tiny_nemotron(out: Path) -> Path:
    """Save a tiny random Nemotron-H (Mamba2 hybrid) model and a thinking-aware tokenizer to ``out``."""
    return write_reader(out, "tiny")
