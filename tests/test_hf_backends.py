"""The transformers backends on tiny random models of the real architectures (offline, CPU).

Random weights emit random text, so these tests check the machinery (loading, chat templates, device
and dtype choice, generation limits, batching, error mapping, the MCP surface) and, with scripted
generations swapped in for ``model.generate`` only, that recovery sees what a real model would say.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported anywhere in this session

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mcp import Client  # noqa: E402
from mcp.types import LoggingMessageNotificationParams, TextContent  # noqa: E402

from auditor.backends import BackendError  # noqa: E402
from auditor.backends.hf import (  # noqa: E402
    THINK_CLOSE,
    HFGrounder,
    HFReader,
    cpu_has_bf16,
    make_grounder,
    make_reader,
)
from auditor.config import Settings  # noqa: E402
from auditor.images import LoadedImage, load_image  # noqa: E402
from auditor.labels import Label  # noqa: E402
from auditor.pipeline import Auditor  # noqa: E402
from auditor.schema import DraftReading, Grounding, ParseOutcome  # noqa: E402
from mcp_server.app import build_server  # noqa: E402
from tests.conftest import NIH_IMAGES, NORMAL_PNG, URGENT_PNG  # noqa: E402
from tests.tiny_models import build_tiny_gemma3, build_tiny_nemotron  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = set(ParseOutcome)
NO_CUDA = pytest.mark.skipif(
    torch.cuda.is_available(), reason="this checks the behaviour of a CPU-only machine"
)
DRAFT = "Mild cardiomegaly. No pneumothorax. Possible right upper lobe nodule."


# --- fixtures -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tiny:
    gemma: Path
    nemotron: Path

    def settings(self, **overrides: Any) -> Settings:
        base: dict[str, Any] = dict(
            grounder="hf",
            reader="hf",
            grounder_model=str(self.gemma),
            reader_model=str(self.nemotron),
            device="cpu",
            grounder_max_new_tokens=24,
            reader_max_new_tokens=16,
            reader_reasoning_budget=12,
        )
        return Settings(**{**base, **overrides})


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """Both tiny models, built once per session (a few seconds)."""
    root = tmp_path_factory.mktemp("tiny_models")
    gemma = _bytes_as_vocabulary(build_tiny_gemma3(root / "gemma3"))
    return Tiny(gemma=gemma, nemotron=build_tiny_nemotron(root / "nemotron_h"))


def _bytes_as_vocabulary(folder: Path) -> Path:
    """Make the tiny Gemma tokenizer's byte-fallback pieces ordinary vocabulary, as in the real one.

    ``build_tiny_gemma3`` registers ``<0x00>``..``<0xFF>`` as special tokens, so decoding with
    ``skip_special_tokens=True`` (what the grounder does) would drop every character the tiny BPE
    never saw, and scripted generations would not come back verbatim.
    """
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["added_tokens"] = [
        t for t in data["added_tokens"] if not re.fullmatch(r"<0x[0-9A-F]{2}>", t["content"])
    ]
    path.write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def grounder(tiny: Tiny) -> HFGrounder:
    g = HFGrounder(tiny.settings())
    g.load()
    return g


@pytest.fixture(scope="session")
def reader(tiny: Tiny) -> HFReader:
    r = HFReader(tiny.settings())
    r.load()
    return r


@pytest.fixture(scope="session")
def xray() -> LoadedImage:
    """A real NIH radiograph when the shared data is present, else a synthetic grey image."""
    path = NIH_IMAGES / NORMAL_PNG
    if path.is_file():
        return load_image(str(path))
    from auditor.images import load_image_bytes

    return load_image_bytes(_png(300, 240, 90))


def _png(width: int, height: int, grey: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), grey).save(buf, format="PNG")
    return buf.getvalue()


def _synthetic(width: int, height: int, grey: int) -> LoadedImage:
    from auditor.images import load_image_bytes

    return load_image_bytes(_png(width, height, grey))


# --- scripted generation: only model.generate is replaced ---------------------------------------------


class Scripted:
    """Stands in for ``model.generate``: appends the next scripted text's tokens to the input ids,
    cut at ``max_new_tokens`` like the real thing, and records every call."""

    def __init__(self, tokenizer: Any, texts: list[str], eos: bool = True) -> None:
        self.tokenizer = tokenizer
        self.texts = list(texts)
        self.eos = eos
        self.calls: list[dict[str, Any]] = []

    def __call__(self, input_ids: Any, max_new_tokens: int, **kwargs: Any) -> Any:
        self.calls.append({"input_ids": input_ids.clone(), "max_new_tokens": max_new_tokens, **kwargs})
        ids = list(self.tokenizer.encode(self.texts.pop(0), add_special_tokens=False))
        if self.eos and len(ids) < max_new_tokens:
            ids.append(self.tokenizer.eos_token_id)
        new = torch.tensor([ids[:max_new_tokens]] * input_ids.shape[0], dtype=input_ids.dtype)
        return torch.cat([input_ids, new], dim=1)


@pytest.fixture()
def script_grounder(grounder: HFGrounder, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Scripted]:
    def install(*texts: str) -> Scripted:
        fake = Scripted(grounder._processor.tokenizer, list(texts))
        monkeypatch.setattr(
            grounder, "settings", dataclasses.replace(grounder.settings, grounder_max_new_tokens=400)
        )
        monkeypatch.setattr(grounder._model, "generate", fake)
        return fake

    return install


def _script_reader(
    reader: HFReader,
    monkeypatch: pytest.MonkeyPatch,
    *texts: str,
    eos: bool = True,
    budget: int = 40,
    answer: int = 200,
) -> Scripted:
    """Script the reader's generations, with budgets that fit the scripted texts."""
    fake = Scripted(reader._processor, list(texts), eos=eos)
    settings = dataclasses.replace(
        reader.settings, reader_reasoning_budget=budget, reader_max_new_tokens=answer
    )
    monkeypatch.setattr(reader, "settings", settings)
    monkeypatch.setattr(reader._model, "generate", fake)
    return fake


def codes(result: Grounding | DraftReading) -> list[str]:
    return [n.code for n in result.notes]


def assert_valid_grounding(g: Grounding, model_path: Path) -> None:
    Grounding.model_validate(g.model_dump())
    assert g.outcome in OUTCOMES
    assert isinstance(g.raw_output, str)
    if g.outcome is not ParseOutcome.CLEAN:
        assert g.notes
    assert g.model.backend == "hf"
    assert g.model.model_id == str(model_path)
    assert g.model.prompt_version and g.model.prompt_version.startswith("ground-v1")
    assert {"load", "preprocess", "generate", "recovery"} <= set(g.timings_ms)


# --- loading, templates, generation with the real tiny models -----------------------------------------


def test_grounder_loads_local_folder_and_grounds(tiny: Tiny, xray: LoadedImage) -> None:
    g = HFGrounder(tiny.settings(device="auto"))
    assert not g.state().loaded
    result = g.ground(xray)
    assert_valid_grounding(result, tiny.gemma)
    assert result.image == xray.info
    assert result.timings_ms["load"] > 0
    assert g.ground(xray).timings_ms["load"] == 0  # resident after the first call
    # image notes come first, then recovery's, then the device's
    assert codes(result)[: len(xray.notes)] == [n.code for n in xray.notes]
    state = g.state()
    cpu_dtype = "bfloat16" if cpu_has_bf16() else "float32"  # auto: bf16 where the CPU computes it
    assert state.loaded and state.backend == "hf" and state.detail["dtype"] == cpu_dtype


@NO_CUDA
def test_auto_device_falls_back_to_cpu_with_a_visible_note(tiny: Tiny, xray: LoadedImage) -> None:
    g = HFGrounder(tiny.settings(device="auto"))
    result = g.ground(xray)
    assert result.model.device == "cpu"
    assert g.state().device == "cpu"
    slow = [n for n in result.notes if n.code == "cpu_slow"]
    assert len(slow) == 1 and "minutes" in slow[0].message


@NO_CUDA
@pytest.mark.parametrize("backend", [HFGrounder, HFReader])
def test_cuda_requested_without_a_gpu_is_a_clear_error(tiny: Tiny, backend: type[Any]) -> None:
    b = backend(tiny.settings(device="cuda"))
    with pytest.raises(BackendError) as err:
        b.load()
    assert err.value.code == "device_unavailable"
    assert "cuda" in str(err.value) and "'auto' or 'cpu'" in str(err.value)
    assert not b.state().loaded


def test_batched_grounding_keeps_order(grounder: HFGrounder, xray: LoadedImage) -> None:
    images = [_synthetic(200, 260, 40), xray, _synthetic(320, 180, 200)]
    results = grounder.ground_batch(images)
    assert [r.image for r in results] == [im.info for im in images]
    for r in results:
        assert_valid_grounding(r, Path(grounder.model_id))
    # left padding: the batch row of an image gives the same greedy text as grounding it alone
    assert grounder.ground(images[2]).raw_output == results[2].raw_output
    assert grounder.ground_batch([]) == []


def _spy_generate(backend: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Wrap the real generate to record each call's budget and how many tokens it added."""
    real = backend._model.generate
    calls: list[dict[str, Any]] = []

    def spy(**kwargs: Any) -> Any:
        out = real(**kwargs)
        calls.append(
            {
                "prompt": kwargs["input_ids"].clone(),
                "max_new_tokens": kwargs["max_new_tokens"],
                "added": out.shape[1] - kwargs["input_ids"].shape[1],
                "stop_strings": kwargs.get("stop_strings"),
                "eos_token_id": kwargs.get("eos_token_id"),
            }
        )
        return out

    monkeypatch.setattr(backend._model, "generate", spy)
    return calls


def test_reader_without_reasoning_generates_once(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    r = HFReader(tiny.settings(reader_reasoning=False))
    r.load()
    calls = _spy_generate(r, monkeypatch)
    reading = r.read(DRAFT)
    DraftReading.model_validate(reading.model_dump())
    assert reading.outcome in OUTCOMES and isinstance(reading.raw_output, str)
    assert reading.model.backend == "hf" and reading.model.model_id == str(tiny.nemotron)
    assert len(calls) == 1 and calls[0]["max_new_tokens"] == 16 and calls[0]["stop_strings"] is None
    prompt = r._processor.decode(calls[0]["prompt"][0])
    assert prompt.endswith("<think></think>")  # the template honoured enable_thinking=False
    assert DRAFT in prompt
    if reading.outcome is not ParseOutcome.CLEAN:
        assert reading.notes


def test_reader_reasoning_respects_its_budget(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    budget, answer = 12, 16
    r = HFReader(
        tiny.settings(reader_reasoning=True, reader_reasoning_budget=budget, reader_max_new_tokens=answer)
    )
    r.load()
    calls = _spy_generate(r, monkeypatch)
    reading = r.read(DRAFT)
    assert reading.outcome in OUTCOMES and isinstance(reading.raw_output, str)
    assert r._processor.decode(calls[0]["prompt"][0]).endswith("<think>\n")  # thinking opened by the template
    # "</think>" is one token here, as in the real tokenizer: phase 1 stops on its id, not on a string
    close_id = r._processor.convert_tokens_to_ids(THINK_CLOSE)
    assert calls[0]["max_new_tokens"] == budget and calls[0]["stop_strings"] is None
    assert close_id in calls[0]["eos_token_id"]
    close_len = len(r._processor.encode(THINK_CLOSE + "\n", add_special_tokens=False))
    total = sum(c["added"] for c in calls) + (close_len if len(calls) == 2 else 0)
    assert total <= budget + answer + close_len
    assert THINK_CLOSE in reading.raw_output or len(calls) == 1
    if len(calls) == 2:
        assert calls[1]["max_new_tokens"] == answer


def test_empty_draft_fails_without_calling_the_model(tiny: Tiny) -> None:
    r = HFReader(tiny.settings())
    reading = r.read("  \n ")
    assert reading.outcome is ParseOutcome.FAILED and codes(reading) == ["draft_empty"]
    assert not r.state().loaded


def test_load_happens_once_under_concurrent_first_use(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    r = HFReader(tiny.settings())
    real = r._load_parts
    count = 0

    def counted() -> Any:
        nonlocal count
        count += 1
        return real()

    monkeypatch.setattr(r, "_load_parts", counted)
    threads = [threading.Thread(target=r.load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count == 1 and r.state().loaded


# --- recovery of scripted generations, through the real backend code ----------------------------------

NODULE = '{"label": "nodule_mass", "box_2d": [0.1, 0.2, 0.3, 0.4]}'
EFFUSION = '{"label": "pleural_effusion", "box_2d": [0.5, 0.1, 0.9, 0.45]}'


def _findings(g: Grounding) -> list[tuple[str, list[float] | None]]:
    return [(f.label.value, f.box.as_list() if f.box else None) for f in g.findings]


def test_grounder_narration_before_json(
    grounder: HFGrounder, script_grounder: Callable[..., Scripted], xray: LoadedImage
) -> None:
    raw = f"Looking at the radiograph, I find the following: [{NODULE}]"
    fake = script_grounder(raw)
    g = grounder.ground(xray)
    assert g.raw_output == raw  # decoded back exactly, end-of-turn token hidden
    assert g.outcome is ParseOutcome.RECOVERED and "output_recovered" in codes(g)
    assert _findings(g) == [("nodule_mass", [0.2, 0.1, 0.4, 0.3])]  # yxyx -> x0, y0, x1, y1
    call = fake.calls[0]
    assert call["max_new_tokens"] == 400 and call["do_sample"] is False and "pixel_values" in call


def test_grounder_truncated_array(
    grounder: HFGrounder, script_grounder: Callable[..., Scripted], xray: LoadedImage
) -> None:
    script_grounder(f'[{EFFUSION}, {{"label": "pneumothorax", "box_2d": [0.1, 0.')
    g = grounder.ground(xray)
    assert g.outcome is ParseOutcome.RECOVERED and "output_truncated_salvaged" in codes(g)
    assert _findings(g) == [("pleural_effusion", [0.1, 0.5, 0.45, 0.9])]


def test_grounder_off_label_names(
    grounder: HFGrounder, script_grounder: Callable[..., Scripted], xray: LoadedImage
) -> None:
    script_grounder(
        '[{"label": "Effusion", "box_2d": [0.5, 0.1, 0.9, 0.45]}, '
        '{"label": "atelectasis", "box_2d": [0.2, 0.2, 0.4, 0.4]}]'
    )
    g = grounder.ground(xray)
    assert [f.label for f in g.findings] == [Label.PLEURAL_EFFUSION]
    assert "label_mapped" in codes(g) and "label_dropped" in codes(g)
    assert g.outcome is ParseOutcome.RECOVERED


def test_grounder_no_finding_beside_nodule(
    grounder: HFGrounder, script_grounder: Callable[..., Scripted], xray: LoadedImage
) -> None:
    script_grounder(f'[{{"label": "no_finding"}}, {NODULE}]')
    g = grounder.ground(xray)
    assert [f.label for f in g.findings] == [Label.NODULE_MASS]  # the URGENT finding wins
    assert "no_finding_conflict" in codes(g)


def test_grounder_think_trace_before_answer(
    grounder: HFGrounder, script_grounder: Callable[..., Scripted], xray: LoadedImage
) -> None:
    script_grounder(f"<think>The left base is blunted.</think>[{EFFUSION}]")
    g = grounder.ground(xray)
    assert [f.label for f in g.findings] == [Label.PLEURAL_EFFUSION]
    assert g.outcome in {ParseOutcome.CLEAN, ParseOutcome.RECOVERED}


def test_grounder_batch_with_scripted_rows(
    grounder: HFGrounder, script_grounder: Callable[..., Scripted], xray: LoadedImage
) -> None:
    script_grounder("not json at all")
    results = grounder.ground_batch([xray, _synthetic(100, 100, 10)])
    assert [r.outcome for r in results] == [ParseOutcome.FAILED, ParseOutcome.FAILED]
    assert all("output_unparseable" in codes(r) for r in results)


CARDIO = '[{"label": "cardiomegaly", "status": "present", "span": "Mild cardiomegaly"}]'


def test_reader_reasoning_then_answer(reader: HFReader, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _script_reader(reader, monkeypatch, "The draft affirms an enlarged heart.</think>", "\n" + CARDIO)
    reading = reader.read(DRAFT)
    assert len(fake.calls) == 2
    close_id = reader._processor.convert_tokens_to_ids(THINK_CLOSE)
    assert fake.calls[0]["max_new_tokens"] == 40 and close_id in fake.calls[0]["eos_token_id"]
    assert fake.calls[1]["max_new_tokens"] == 200
    # the trace and its close tag are kept for recovery; the end-of-turn token is hidden
    assert reading.raw_output == "The draft affirms an enlarged heart.</think>\n" + CARDIO
    assert [(m.label, m.status, m.span, m.start) for m in reading.mentions] == [
        (Label.CARDIOMEGALY, "present", "Mild cardiomegaly", 0)
    ]
    assert reading.outcome is ParseOutcome.CLEAN


def test_reader_budget_exhausted_closes_the_trace(reader: HFReader, monkeypatch: pytest.MonkeyPatch) -> None:
    rambling = "let me think about the heart and the lungs and the pleura and more " * 5
    fake = _script_reader(reader, monkeypatch, rambling, CARDIO, budget=12)
    reading = reader.read(DRAFT)
    tok = reader._processor
    close = tok.encode(THINK_CLOSE + "\n", add_special_tokens=False)
    phase2_prompt = fake.calls[1]["input_ids"][0].tolist()
    assert phase2_prompt[-len(close) :] == close  # the close tag was appended for the model
    assert len(phase2_prompt) == fake.calls[0]["input_ids"].shape[1] + 12 + len(close)
    assert "reasoning_budget_reached" in codes(reading)
    assert [m.label for m in reading.mentions] == [Label.CARDIOMEGALY]


def test_reader_thought_ended_without_close(reader: HFReader, monkeypatch: pytest.MonkeyPatch) -> None:
    _script_reader(reader, monkeypatch, "short thought", CARDIO)
    reading = reader.read(DRAFT)
    assert "reasoning_unclosed" in codes(reading)
    assert [m.label for m in reading.mentions] == [Label.CARDIOMEGALY]


def test_reader_think_trace_before_answer_without_reasoning(
    tiny: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = HFReader(tiny.settings(reader_reasoning=False))
    r.load()
    answer = '[{"label": "pneumothorax", "status": "absent", "span": "no pneumothorax"}]'
    fake = _script_reader(r, monkeypatch, f"<think>negated</think>Here it is: {answer}")
    reading = r.read(DRAFT)
    assert len(fake.calls) == 1
    assert reading.raw_output is not None and reading.raw_output.startswith("<think>negated</think>")
    assert [(m.label, m.status, m.span) for m in reading.mentions] == [
        (Label.PNEUMOTHORAX, "absent", "No pneumothorax")
    ]
    assert "span_relocated" in codes(reading) and reading.outcome is ParseOutcome.RECOVERED


def test_reader_off_label_and_truncated(reader: HFReader, monkeypatch: pytest.MonkeyPatch) -> None:
    _script_reader(
        reader,
        monkeypatch,
        "ok</think>",
        '[{"label": "atelectasis", "status": "present", "span": "Mild"}, '
        '{"label": "mass", "status": "possible", "span": "right upper lobe nodule"}, {"label": "pneumo',
        eos=False,
    )
    reading = reader.read(DRAFT)
    assert [(m.label, m.status) for m in reading.mentions] == [(Label.NODULE_MASS, "uncertain")]
    assert {"label_dropped", "label_mapped", "output_truncated_salvaged"} <= set(codes(reading))


# --- failures: load, OOM, and the server keeps serving -------------------------------------------------


def test_missing_folder_then_it_appears(tiny: Tiny, tmp_path: Path, xray: LoadedImage) -> None:
    later = tmp_path / "appears-later"
    g = HFGrounder(tiny.settings(grounder_model=str(later)))
    with pytest.raises(BackendError) as err:
        g.ground(xray)
    assert err.value.code == "load_failed"
    assert str(later) in str(err.value) and "does not exist" in str(err.value)
    state = g.state()
    assert not state.loaded and "last_error" in state.detail
    assert g._model is None and g._processor is None  # nothing half-loaded
    shutil.copytree(tiny.gemma, later)
    assert_valid_grounding(g.ground(xray), later)  # the same instance retries the load
    assert "last_error" not in g.state().detail


def test_unknown_architecture_is_load_failed(tiny: Tiny) -> None:
    g = HFGrounder(tiny.settings(grounder_model=str(tiny.nemotron)))  # a text-only checkpoint
    with pytest.raises(BackendError) as err:
        g.load()
    assert err.value.code == "load_failed" and str(tiny.nemotron) in str(err.value)
    assert g._model is None and g._processor is None


def test_hub_id_offline_is_load_failed(tiny: Tiny) -> None:
    r = HFReader(tiny.settings(reader_model="nvidia/not-a-cached-model"))
    with pytest.raises(BackendError) as err:
        r.load()
    assert err.value.code == "load_failed"
    assert "nvidia/not-a-cached-model" in str(err.value) and "hub" in str(err.value)


def test_missing_transformers_suggests_the_extra(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    with pytest.raises(BackendError) as err:
        HFReader(tiny.settings()).load()
    assert err.value.code == "load_failed" and "cxr-draft-auditor[models]" in str(err.value)


def _oom(**_: Any) -> Any:
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _runtime_oom(**_: Any) -> Any:
    raise RuntimeError("CUDA error: out of memory")


@pytest.mark.parametrize("failure", [_oom, _runtime_oom])
def test_out_of_memory_is_reported_and_the_model_stays(
    grounder: HFGrounder, xray: LoadedImage, monkeypatch: pytest.MonkeyPatch, failure: Callable[..., Any]
) -> None:
    real = grounder._model.generate
    monkeypatch.setattr(grounder._model, "generate", failure)
    with pytest.raises(BackendError) as err:
        grounder.ground(xray)
    assert err.value.code == "out_of_memory" and grounder.model_id in str(err.value)
    assert grounder.state().loaded
    monkeypatch.setattr(grounder._model, "generate", real)
    assert grounder.ground(xray).outcome in OUTCOMES


def test_other_generation_errors_are_backend_errors(
    reader: HFReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: Any) -> Any:
        raise ValueError("shape mismatch")

    monkeypatch.setattr(reader._model, "generate", broken)
    with pytest.raises(BackendError) as err:
        reader.read(DRAFT)
    assert err.value.code == "generation_failed" and "shape mismatch" in str(err.value)


# --- through the MCP server, in memory ----------------------------------------------------------------


def _run(server: Any, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(server) as client:
            await body(client)

    anyio.run(main)


def _error_text(result: Any) -> str:
    assert result.is_error, result
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


@pytest.fixture()
def nih(nih_images: Path) -> Path:
    return nih_images


def test_mcp_tools_on_the_real_backends(
    tiny: Tiny, grounder: HFGrounder, reader: HFReader, nih: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = build_server(Auditor(tiny.settings(), grounder=grounder, reader=reader))
    image = str(nih / URGENT_PNG)

    async def body(client: Client) -> None:
        g = await client.call_tool("ground_image", {"image": image})
        assert not g.is_error, g
        grounding = Grounding.model_validate(g.structured_content)
        assert grounding.model.backend == "hf" and grounding.model.model_id == str(tiny.gemma)

        _script_reader(reader, monkeypatch, "thinking</think>", CARDIO)
        r = await client.call_tool("parse_draft", {"draft": DRAFT})
        reading = DraftReading.model_validate(r.structured_content)
        assert reading.model.backend == "hf" and [m.label for m in reading.mentions] == [Label.CARDIOMEGALY]

        _script_reader(reader, monkeypatch, "thinking</think>", CARDIO)
        a = await client.call_tool("audit", {"image": image, "draft": DRAFT})
        assert not a.is_error, a
        assert (
            a.structured_content is not None and a.structured_content["grounding"]["model"]["backend"] == "hf"
        )

        models = json.loads((await client.read_resource("cxr://models")).contents[0].text)  # type: ignore[union-attr]
        assert [(m["role"], m["backend"], m["loaded"]) for m in models] == [
            ("grounder", "hf", True),
            ("reader", "hf", True),
        ]

    _run(server, body)


def test_mcp_model_loading_is_logged_to_the_client(tiny: Tiny, nih: Path) -> None:
    """The first call loads the image model: the client hears it start and end, then the generation."""
    server = build_server(Auditor(tiny.settings(), grounder=HFGrounder(tiny.settings())))
    seen: list[tuple[str, str]] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        seen.append((params.level, str(params.data)))

    async def main() -> None:
        async with Client(server, mode="legacy", logging_callback=on_log) as client:
            g = await client.call_tool("ground_image", {"image": str(nih / URGENT_PNG)})
            assert not g.is_error, g

    anyio.run(main)
    assert [level for level, _ in seen] == ["info", "info", "info"], seen
    assert seen[0][1] == f"image model: loading {tiny.gemma}"
    assert seen[1][1].startswith(f"image model: {tiny.gemma} loaded on cpu (") and seen[1][1].endswith(" s")
    assert seen[2][1].startswith(f"image model (hf {tiny.gemma}): ") and "tokens: " in seen[2][1]


def test_mcp_failing_grounder_then_serving(tiny: Tiny, reader: HFReader, nih: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    server = build_server(
        Auditor(
            tiny.settings(grounder_model=str(missing)),
            grounder=HFGrounder(tiny.settings(grounder_model=str(missing))),
            reader=reader,
        )
    )

    async def body(client: Client) -> None:
        g = await client.call_tool("ground_image", {"image": str(nih / URGENT_PNG)})
        text = _error_text(g)
        assert "load_failed" in text and str(missing) in text
        r = await client.call_tool("parse_draft", {"draft": DRAFT})
        assert not r.is_error, r
        DraftReading.model_validate(r.structured_content)
        a = await client.call_tool("audit", {"image": str(nih / URGENT_PNG), "draft": DRAFT})
        assert "load_failed" in _error_text(a)

    _run(server, body)


def test_mcp_out_of_memory_then_next_call_fine(
    tiny: Tiny, grounder: HFGrounder, reader: HFReader, nih: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = grounder._model.generate
    failures = iter([True])

    def once(**kwargs: Any) -> Any:
        if next(failures, False):
            _oom()
        return real(**kwargs)

    monkeypatch.setattr(grounder._model, "generate", once)
    monkeypatch.setattr(reader._model, "generate", _oom)
    server = build_server(Auditor(tiny.settings(), grounder=grounder, reader=reader))
    image = str(nih / URGENT_PNG)

    async def body(client: Client) -> None:
        first = await client.call_tool("ground_image", {"image": image})
        text = _error_text(first)
        assert "out_of_memory" in text and str(tiny.gemma) in text
        again = await client.call_tool("ground_image", {"image": image})
        assert not again.is_error, again
        # an OOM in the reader degrades to the rule reader, visibly
        r = await client.call_tool("parse_draft", {"draft": DRAFT})
        reading = DraftReading.model_validate(r.structured_content)
        assert reading.model.backend == "rules" and "reader_fallback_rules" in codes(reading)

    _run(server, body)


# --- import hygiene -----------------------------------------------------------------------------------


def test_importing_the_backend_does_not_import_torch(tiny: Tiny) -> None:
    code = (
        "import sys\n"
        "import auditor.backends.hf as hf\n"
        "from auditor.config import Settings\n"
        f"s = Settings(grounder_model={str(tiny.gemma)!r}, reader_model={str(tiny.nemotron)!r})\n"
        "g, r = hf.make_grounder(s), hf.make_reader(s)\n"
        "states = [g.state(), r.state()]\n"
        "assert not any(st.loaded for st in states)\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stdout


def test_factory_entry_points(tiny: Tiny) -> None:
    s = tiny.settings()
    assert isinstance(make_grounder(s), HFGrounder) and isinstance(make_reader(s), HFReader)
    from auditor.backends import factory
    from auditor.backends.batching import CoalescingGrounder

    batched = factory.make_grounder(s)  # concurrent calls are gathered into batches (default 4)
    assert isinstance(batched, CoalescingGrounder) and isinstance(batched.inner, HFGrounder)
    assert isinstance(factory.make_grounder(dataclasses.replace(s, grounding_batch_size=1)), HFGrounder)
    assert isinstance(factory.make_reader(s, "hf"), HFReader)


# --- the fast path's pieces on the real architectures ------------------------------------------------


def test_auto_dtype_is_bf16_only_where_the_cpu_computes_it() -> None:
    from auditor.backends.hf import resolve_dtype

    assert cpu_has_bf16("flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_bf16("flags: fpu amx_bf16\n")
    assert not cpu_has_bf16("flags\t\t: fpu sse avx2 avx512f\n")
    assert not cpu_has_bf16("")
    assert resolve_dtype("auto", "cpu", torch, cpu_bf16=True) is torch.bfloat16
    assert resolve_dtype("auto", "cpu", torch, cpu_bf16=False) is torch.float32
    assert resolve_dtype("auto", "cuda", torch, cpu_bf16=False) is torch.bfloat16
    assert resolve_dtype("float32", "cpu", torch, cpu_bf16=True) is torch.float32


@pytest.mark.parametrize(
    ("pieces", "stops_at"),
    [
        (['[{"label', '": "no_finding"}', "]", " trailing"], 2),
        (["  ", "[", '{"label": "a ] }"', "}", "]"], 4),  # brackets inside strings do not count
        (['{"findings": [', "]", "}", "x"], 2),
        (["Here is", " [", "]"], None),  # prose first: never stopped early, recovery reads it whole
        (['[{"label": "a\\"]"}', "]"], 1),  # an escaped quote stays inside the string
        (["[{'label': 'a ]'}", ", {'label': 'b'}", "]"], 2),  # a Python literal's quotes count too
    ],
)
def test_grounding_stops_once_its_json_answer_closes(pieces: list[str], stops_at: int | None) -> None:
    from auditor.backends.hf_generation import JsonAnswerClosed

    criterion = JsonAnswerClosed(lambda i: pieces[i], prompt_len=1)
    fired = None
    for step in range(len(pieces)):
        ids = torch.tensor([[0, *range(step + 1)]])
        if bool(criterion(ids, None)[0]):
            fired = step
            break
    assert fired == stops_at


def test_real_generation_records_prefill_decode_and_tokens(grounder: HFGrounder, xray: LoadedImage) -> None:
    result = grounder.ground(xray)
    assert {"preprocess", "generate", "prefill", "decode"} <= set(result.timings_ms)
    assert result.tokens["prompt"] > 16 and 1 <= result.tokens["generated"] <= 24


def test_reader_records_each_phase(reader: HFReader) -> None:
    reading = reader.read(DRAFT)
    assert {"reasoning_prefill", "reasoning_decode"} <= set(reading.timings_ms)
    assert reading.tokens["prompt"] > 0 and 1 <= reading.tokens["reasoning"] <= 12


def test_grounding_stop_can_be_switched_off(
    tiny: Tiny, xray: LoadedImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditor.backends.hf_generation import JsonAnswerClosed

    for enabled in (True, False):
        g = HFGrounder(tiny.settings(grounding_stop_at_end=enabled))
        g.load()
        calls = _spy_generate_kwargs(g, monkeypatch)
        g.ground(xray)
        kinds = [type(c) for c in calls[0]["stopping_criteria"]]
        assert (JsonAnswerClosed in kinds) is enabled


def test_static_cache_generates_on_the_real_architecture(tiny: Tiny, xray: LoadedImage) -> None:
    g = HFGrounder(tiny.settings(static_cache=True))
    result = g.ground(xray)
    assert result.outcome in OUTCOMES and result.tokens["generated"] >= 1


def test_eager_attention_is_a_setting(tiny: Tiny, xray: LoadedImage) -> None:
    g = HFGrounder(tiny.settings(attention="eager"))
    g.load()
    assert g._model.config._attn_implementation == "eager"
    r = HFReader(tiny.settings(attention="auto"))
    assert r.read(DRAFT).outcome in OUTCOMES


def _spy_generate_kwargs(backend: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    real = backend._model.generate
    calls: list[dict[str, Any]] = []

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(backend._model, "generate", spy)
    return calls


def test_random_checkpoints_report_their_parameters(tiny: Tiny) -> None:
    from auditor.testing.checkpoints import parameter_count

    loaded = HFReader(tiny.settings())
    loaded.load()
    assert parameter_count(tiny.nemotron) == sum(p.numel() for p in loaded._model.parameters())


def test_real_size_configs_have_the_published_parameter_counts() -> None:
    """The benchmark's checkpoints are the real shapes: built on the meta device (no memory)."""
    from transformers import Gemma3ForConditionalGeneration, NemotronHForCausalLM

    from auditor.testing.checkpoints import (
        gemma3_config,
        gemma_tokenizer,
        nemotron_config,
        nemotron_tokenizer,
    )

    with torch.device("meta"):
        gemma = Gemma3ForConditionalGeneration(gemma3_config("real", gemma_tokenizer("real")))
        nemotron = NemotronHForCausalLM(nemotron_config("real", nemotron_tokenizer("real")))
    assert round(sum(p.numel() for p in gemma.parameters()) / 1e9, 2) == 4.30
    assert round(sum(p.numel() for p in nemotron.parameters()) / 1e9, 2) == 3.97


def test_a_checkpoint_that_cannot_fit_is_refused_before_loading(
    tiny: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditor.backends import memory

    monkeypatch.setattr(memory, "cpu_available_bytes", lambda meminfo=None: 1024)
    g = HFGrounder(tiny.settings())
    with pytest.raises(BackendError) as caught:
        g.load()
    assert caught.value.code == "out_of_memory" and not g.loaded
    message = str(caught.value)
    assert str(tiny.gemma) in message and "needs about" in message and "CXR_AUDITOR_GROUNDER=http" in message


def test_memory_arithmetic_from_safetensors_headers(tiny: Tiny) -> None:
    from auditor.backends import memory
    from auditor.testing.checkpoints import parameter_count

    elements = memory.checkpoint_elements(tiny.nemotron)
    assert elements is not None and sum(elements.values()) == parameter_count(tiny.nemotron)
    assert memory.bytes_needed({"F32": 10, "I64": 2}, 2) == 10 * 2 + 2 * 8
    assert memory.checkpoint_elements(tiny.nemotron / "missing") is None
    assert memory.cpu_available_bytes("MemTotal: 10 kB\nMemAvailable:  2048 kB\n") == 2048 * 1024
    assert memory.shortfall(100, 100) and not memory.shortfall(100, 200) and not memory.shortfall(100, None)


def test_generated_lengths_count_to_the_end_token_or_the_early_stop() -> None:
    from auditor.backends.hf import _generated_lengths

    generated = torch.tensor([[5, 6, 1, 0, 0], [5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    assert _generated_lengths(generated, frozenset({1}), [None, None, 3]) == [3, 5, 3]
    assert _generated_lengths(generated, frozenset(), ()) == [5, 5, 5]


def test_reader_answer_after_a_close_tag_in_pieces_is_not_continued(
    reader: HFReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close tag the model writes in several pieces does not stop phase 1 by id: when the model
    then answers and ends its turn, that answer stands and no second phase runs after the end token."""
    fake = _script_reader(reader, monkeypatch, "Enlarged heart.</th" + "ink>\n" + CARDIO, budget=200)
    reading = reader.read(DRAFT)
    assert len(fake.calls) == 1
    assert [m.label for m in reading.mentions] == [Label.CARDIOMEGALY]


def test_reader_that_closes_and_ends_without_an_answer_is_asked_for_one(
    reader: HFReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _script_reader(reader, monkeypatch, "Enlarged heart.</think>", CARDIO)
    reading = reader.read(DRAFT)
    assert len(fake.calls) == 2
    eos = reader._processor.eos_token_id
    assert int(fake.calls[1]["input_ids"][0, -1]) != eos  # the end token went before phase 2
    assert [m.label for m in reading.mentions] == [Label.CARDIOMEGALY]
