"""Fail fast without weights: whether a configured checkpoint is on this machine is known from the disk
alone (a folder or the Hugging Face cache), at start and before every load, so a missing model is one
actionable answer in milliseconds instead of minutes of hub retries; a failed load is remembered.

Nothing here touches the network or needs torch: loads are replaced by stand-ins where one would run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from auditor.backends import BackendError
from auditor.backends.availability import (
    HUB,
    LoadMemory,
    ensure_local,
    locate,
    tidy,
    weights_problem,
)
from auditor.config import ConfigError, Settings, load_settings

SCRIPT = Path(sys.executable).parent / "cxr-auditor"
HUB_ID = "someone/some-cxr-model"


def checkpoint(folder: Path, *, config: bool = True, weights: bool = True) -> Path:
    """A folder that looks like a saved checkpoint (the files' contents do not matter here)."""
    folder.mkdir(parents=True, exist_ok=True)
    if config:
        (folder / "config.json").write_text("{}", encoding="utf-8")
    if weights:
        (folder / "model.safetensors").write_bytes(b"\0")
    return folder


def cached(cache: Path, repo_id: str, **kwargs: bool) -> Path:
    """A Hugging Face cache entry for ``repo_id`` at ``main``, laid out as the hub client writes it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return checkpoint(repo / "snapshots" / commit, **kwargs)


@pytest.fixture()
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache for this test only."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


# --- locating a checkpoint ---------------------------------------------------------------------------


def test_a_complete_folder_is_ready(tmp_path: Path) -> None:
    found = locate(str(checkpoint(tmp_path / "ckpt")))
    assert found.ready and found.where == "folder" and not found.hub_id


def test_folder_problems_are_named(tmp_path: Path) -> None:
    assert "does not exist" in str(locate(str(tmp_path / "nope")).problem)
    assert "config.json" in str(weights_problem(checkpoint(tmp_path / "a", config=False)))
    assert "no weight files" in str(weights_problem(checkpoint(tmp_path / "b", weights=False)))
    sharded = checkpoint(tmp_path / "c", weights=False)
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    (sharded / "model-00001-of-00002.safetensors").write_bytes(b"\0")
    assert "1 of 2 weight files are missing" in str(weights_problem(sharded))


def test_hub_id_is_looked_up_in_the_cache_only(hf_cache: Path) -> None:
    missing = locate(HUB_ID)
    assert not missing.ready and missing.hub_id and str(hf_cache) in str(missing.problem)
    cached(hf_cache, HUB_ID)
    found = locate(HUB_ID)
    assert found.ready and found.where == "cache" and found.path and found.path.startswith(str(hf_cache))
    partial = "someone/partial"
    cached(hf_cache, partial, weights=False)
    assert "no weight files" in str(locate(partial).problem)


# --- the message, and what a load does first ---------------------------------------------------------


def test_missing_hub_model_fails_at_once_with_every_way_out(hf_cache: Path) -> None:
    settings = Settings(grounder_model=HUB_ID)
    started = time.perf_counter()
    with pytest.raises(BackendError) as err:
        ensure_local("grounder", HUB_ID, None, settings)
    assert time.perf_counter() - started < 1.0
    text = str(err.value)
    assert err.value.code == "load_failed" and HUB_ID in text
    for way in ("cxr-auditor fetch-models", f"hf download {HUB_ID}", "--grounder http", "--grounder replay"):
        assert way in text, way
    assert "CXR_AUDITOR_ALLOW_DOWNLOAD" in text and "ground_image" in text
    assert ".." not in text and "Traceback" not in text


def test_download_only_when_allowed(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.backends.availability as availability

    fetched: list[str] = []

    def fake_download(model_id: str, revision: str | None = None) -> str:
        fetched.append(model_id)
        return str(cached(hf_cache, model_id))

    monkeypatch.setattr(availability, "download", fake_download)
    with pytest.raises(BackendError):
        ensure_local("reader", HUB_ID, None, Settings())
    assert fetched == []
    assert ensure_local("reader", HUB_ID, None, Settings(allow_download=True)).ready
    assert fetched == [HUB_ID]


def test_download_refused_offline_is_one_line(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from auditor.backends.availability import download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackendError) as err:
        download(HUB_ID)
    assert err.value.code == "download_failed" and "offline" in str(err.value)
    assert "\n" not in str(err.value)


def test_tidy_joins_sentences_without_a_double_period() -> None:
    assert tidy("could not load: OSError: see the docs..  Try again.") == (
        "could not load: OSError: see the docs. Try again."
    )
    assert tidy("cut short...") == "cut short..."


def test_hub_is_offline_only_while_loading() -> None:
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    with HUB.offline():
        assert constants.HF_HUB_OFFLINE is True
    assert before == constants.HF_HUB_OFFLINE


def test_load_memory_answers_until_the_retry_is_due() -> None:
    now = [100.0]
    memory = LoadMemory(retry_after_s=60, clock=lambda: now[0])
    memory.check()  # nothing remembered
    memory.remember(BackendError("load_failed", "it broke.."))
    with pytest.raises(BackendError, match=r"^it broke\.$"):
        memory.check()
    now[0] += 59
    assert memory.retry_in_s() == 1.0
    with pytest.raises(BackendError):
        memory.check()
    now[0] += 2
    memory.check()  # due: the caller tries again
    memory.forget()
    assert memory.retry_in_s() is None


def test_settings_for_downloads_retries_and_dtypes() -> None:
    s = load_settings(
        env={
            "CXR_AUDITOR_ALLOW_DOWNLOAD": "1",
            "CXR_AUDITOR_LOAD_RETRY_S": "5",
            "CXR_AUDITOR_GROUNDER_DTYPE": "bfloat16",
            "CXR_AUDITOR_READER_DTYPE": "",
        }
    )
    assert (s.allow_download, s.load_retry_s, s.grounder_dtype, s.reader_dtype) == (
        True,
        5.0,
        "bfloat16",
        None,
    )
    with pytest.raises(ConfigError, match="reader_dtype"):
        load_settings({"reader_dtype": "int4"}, env={})
    with pytest.raises(ConfigError, match="load_retry_s"):
        load_settings({"load_retry_s": -1}, env={})


# --- the hf backends: no load without weights, a failed load remembered -------------------------------


def _no_load(*_: Any, **__: Any) -> Any:
    raise AssertionError("the model must not be loaded: its weights are not on this machine")


@pytest.fixture()
def hf_module() -> Any:
    pytest.importorskip("huggingface_hub")
    import auditor.backends.hf as hf

    return hf


def test_hf_grounder_without_weights_never_starts_a_load(
    hf_module: Any, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hf_module.HFGrounder, "_load_parts", _no_load)
    grounder = hf_module.HFGrounder(Settings(grounder_model=HUB_ID))
    state = grounder.state()
    assert state.detail["weights"] == "missing" and "fetch-models" in str(state.detail["problem"])
    for _ in range(2):  # every call: at once, the same message
        started = time.perf_counter()
        with pytest.raises(BackendError) as err:
            grounder.load()
        assert time.perf_counter() - started < 1.0
        assert err.value.code == "load_failed" and "fetch-models" in str(err.value)


def test_a_failed_load_is_remembered_until_reload(
    hf_module: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def failing(self: Any) -> Any:
        calls.append(1)
        raise BackendError("load_failed", "could not load the reader model: OSError: broken file..")

    monkeypatch.setattr(hf_module.HFReader, "_load_parts", failing)
    folder = checkpoint(tmp_path / "reader")
    reader = hf_module.HFReader(Settings(reader_model=str(folder), load_retry_s=3600))
    messages = []
    for _ in range(3):
        with pytest.raises(BackendError) as err:
            reader.read("No pneumothorax.")
        messages.append(str(err.value))
    assert len(calls) == 1, "later calls are answered from memory, without a second load"
    assert len(set(messages)) == 1 and not messages[0].endswith("..")
    assert reader.state().detail["retry_load_in_s"] > 3500
    with pytest.raises(BackendError):
        reader.load()  # an explicit load tries again
    assert len(calls) == 2


def test_the_load_runs_with_the_hub_offline(
    hf_module: Any, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cached(hf_cache, HUB_ID)
    seen: list[bool] = []

    def spy(self: Any) -> Any:
        seen.append(constants.HF_HUB_OFFLINE)
        raise BackendError("load_failed", "stand-in")

    monkeypatch.setattr(hf_module.HFGrounder, "_load_parts", spy)
    with pytest.raises(BackendError, match="stand-in"):
        hf_module.HFGrounder(Settings(grounder_model=HUB_ID)).load()
    assert seen == [True] and constants.HF_HUB_OFFLINE is False


# --- the commands: said at start, one line, the right exit code --------------------------------------


def _run(
    *args: str, env_cache: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXR_AUDITOR_", "HF_"))}
    env |= {"HF_HUB_CACHE": str(env_cache), **(extra_env or {})}
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )


def test_serve_says_at_start_what_cannot_work(tmp_path: Path) -> None:
    proc = _run("serve", env_cache=tmp_path)  # stdin closed: the server starts and ends at once
    assert (
        "warning: the grounder model 'alex-feeel/medgemma-cxr-auditor-v2' is not on this machine"
        in proc.stderr
    )
    assert "ground_image, audit and render_findings cannot work" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_preload_failure_is_one_line(tmp_path: Path) -> None:
    proc = _run("serve", "--preload", env_cache=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode == 3, proc.stderr
    assert len(errors) == 1 and errors[0].startswith(
        "cxr-auditor: error: --preload: model backend (load_failed)"
    )
    assert "Traceback" not in proc.stderr


def test_ground_command_without_weights_is_one_line_and_exit_3(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (64, 64), 128).save(image)
    started = time.perf_counter()
    proc = _run("ground", str(image), env_cache=tmp_path)
    assert time.perf_counter() - started < 30
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "fetch-models" in proc.stderr


def test_fetch_models_offline_is_one_line(tmp_path: Path) -> None:
    proc = _run("fetch-models", env_cache=tmp_path, extra_env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("cxr-auditor: error: grounder alex-feeel/")
    assert "offline" in proc.stderr and "Traceback" not in proc.stderr


def test_fetch_models_skips_what_is_here(tmp_path: Path) -> None:
    cached(tmp_path, "org/grounder")
    proc = _run("fetch-models", "--grounder-model", "org/grounder", env_cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["grounder"]["status"] == "present"


def test_auto_reader_picks_the_model_only_when_its_weights_are_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU, ``reader: auto`` is the Nemotron reader only when it can load; else the rule reader,
    so a missing checkpoint is not a fallback note on every call."""
    from auditor.backends import factory
    from auditor.config import Settings

    monkeypatch.setattr(factory, "cuda_available", lambda: True)
    missing = Settings(grounder="hf", reader="auto", reader_model=str(tmp_path / "no-such-model"))
    assert factory.resolve_reader_kind(missing) == "rules"
    assert factory.resolve_reader_kind(dataclasses.replace(missing, allow_download=True)) == "hf"
    folder = tmp_path / "nemotron"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"")
    assert factory.resolve_reader_kind(dataclasses.replace(missing, reader_model=str(folder))) == "hf"
    assert (
        factory.resolve_reader_kind(dataclasses.replace(missing, device="cpu", reader_model=str(folder)))
        == "rules"
    )


def test_an_unreachable_hub_does_not_blame_hf_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from auditor.backends.availability import _download_error

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    message = _download_error("org/model", OSError("offline: connection refused"))
    assert "HF_HUB_OFFLINE" not in message and "cannot be reached" in message
