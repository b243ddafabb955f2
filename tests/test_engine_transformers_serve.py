"""The engine backend against a REAL OpenAI-compatible engine: ``transformers serve`` on 127.0.0.1,
serving the tiny random Gemma3 (MedGemma's architecture, with an image) and Nemotron-H models built
offline by ``tests/tiny_models.py``. Random weights emit random text; the point is that the request
shapes are accepted by a real engine and whatever comes back is recovered and counted, never raised.

Skipped, with the engine's own stderr, where ``transformers serve`` cannot start here.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from auditor.backends.engine import EngineClient, EngineGrounder, EngineReader
from auditor.images import LoadedImage
from auditor.recovery import BoxFormat, tally
from auditor.schema import DraftReading, Grounding, ImageInfo, ParseOutcome

STARTUP_S = 45.0
REQUEST_TIMEOUT_S = 60.0
SERVE = (  # the `transformers` console script, run with this interpreter (no PATH lookup)
    "import sys; from transformers.cli.transformers import main; "
    "sys.argv[0] = 'transformers'; sys.exit(main())"
)
DRAFTS = [
    "Small left pleural effusion. No pneumothorax.",
    "Mild cardiomegaly. Right upper lobe nodule.",
]


@dataclass(frozen=True)
class Served:
    url: str
    gemma: str
    nemotron: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, chars: int = 2000) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return text[-chars:].strip() or "(no output)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Always end the server we started, by its own pid: politely, then for sure."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"`transformers serve` exited with code {proc.returncode}: {_tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.skip(f"`transformers serve` did not become healthy within {STARTUP_S:g} s: {_tail(log)}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    missing = [
        m for m in ("fastapi", "uvicorn", "torch", "transformers") if importlib.util.find_spec(m) is None
    ]
    if missing:
        pytest.skip(f"`transformers serve` needs {', '.join(missing)} (pip install 'transformers[serving]')")
    from tests.tiny_models import build_tiny_gemma3, build_tiny_nemotron

    root = tmp_path_factory.mktemp("engine")
    gemma = build_tiny_gemma3(root / "tiny-gemma3")
    nemotron = build_tiny_nemotron(root / "tiny-nemotron")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "serve.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVE,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--device",
                "cpu",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=root,
        )
    try:
        _wait_healthy(proc, url, log)
        yield Served(url=url, gemma=str(gemma), nemotron=str(nemotron))
    finally:
        _stop(proc)


def _client(served: Served, model: str) -> EngineClient:
    return EngineClient(served.url + "/v1", model, timeout_s=REQUEST_TIMEOUT_S, retries=0, max_in_flight=2)


def _image() -> LoadedImage:
    img = Image.linear_gradient("L").resize((96, 80))
    return LoadedImage(image=img, info=ImageInfo(sha256="b" * 64, width=96, height=80, source_format="PNG"))


def test_reader_against_a_real_engine(served: Served) -> None:
    reader = EngineReader(_client(served, served.nemotron), max_new_tokens=24, reasoning_budget=8)
    reader.load()  # GET /v1/models on the real engine
    assert reader.state().loaded is True
    readings: list[DraftReading] = []
    for reasoning in (True, False):
        reader.reasoning = reasoning
        for draft in DRAFTS:
            reading = reader.read(draft)  # never raises: random text is recovered or counted failed
            DraftReading.model_validate(reading.model_dump())  # spans verbatim, contract holds
            assert reading.draft == draft and reading.raw_output is not None
            assert reading.model.backend == "http" and reading.model.model_id == served.nemotron
            assert reading.outcome in set(ParseOutcome)
            assert reading.timings_ms["request"] > 0
            if reading.outcome is not ParseOutcome.CLEAN:
                assert reading.notes, "a non-clean generation must say why"
            readings.append(reading)
    counts = tally(r.outcome for r in readings)
    assert counts.total == len(readings) == 4
    assert counts.clean + counts.recovered + counts.failed == counts.total


def test_grounder_with_an_image_against_a_real_engine(served: Served) -> None:
    grounder = EngineGrounder(_client(served, served.gemma), BoxFormat("yxyx", 1.0), max_new_tokens=24)
    image = _image()
    results = [grounder.ground(image) for _ in range(2)]
    for result in results:
        Grounding.model_validate(result.model_dump())
        assert result.model.backend == "http" and result.model.model_id == served.gemma
        assert result.image == image.info and result.raw_output is not None
        assert result.outcome in set(ParseOutcome)
        if result.outcome is ParseOutcome.FAILED:
            assert result.findings == [] and result.notes
    assert results[0].raw_output == results[1].raw_output  # temperature 0: the engine is deterministic
    assert tally(r.outcome for r in results).total == 2
    assert grounder.state().loaded is True
