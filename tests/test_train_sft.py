"""`train sft` and `train merge` on the tiny random Gemma3 (CPU): the loss falls on a tiny repeated set,
only the assistant turn is scored, a resumed run equals a straight one, the merge check passes on the
merged folder and fails loudly on an unmerged copy, and the merged folder served by the hf backend
answers with exactly the findings it was trained on (the base does not)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

from auditor.backends.hf import HFGrounder  # noqa: E402
from auditor.config import Settings  # noqa: E402
from auditor.images import load_image  # noqa: E402
from auditor.labels import Label  # noqa: E402
from auditor.prompts import grounding_prompt  # noqa: E402
from auditor.recovery import BoxFormat  # noqa: E402
from auditor.train.encode import IGNORE, encode  # noqa: E402
from auditor.train.merge import MergeError, compare_weights, merge, verify_merge  # noqa: E402
from auditor.train.records import SftRecord, new_record, write_records  # noqa: E402
from auditor.train.sft import SftConfig, TrainError, train, wants_4bit  # noqa: E402
from auditor.train.targets import TrainFinding  # noqa: E402
from tests.conftest import NIH_IMAGES, NORMAL_PNG, URGENT_PNG  # noqa: E402
from tests.test_cli import run_main  # noqa: E402
from tests.tiny_models import build_tiny_gemma3  # noqa: E402

SHORT_PROMPT = "Find the findings."
"""A short prompt (a grounder_prompt file, as a fine-tune on another prompt would use) keeps each step
to ~60 tokens. Its target uses only characters the tiny tokenizer learned, so greedy decoding can
reproduce it exactly."""
TRAINED = TrainFinding(Label.PLEURAL_EFFUSION, (0.12, 0.45, 0.48, 0.86))


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A 64-wide model gains nothing from threads, and on a busy 2-core machine they cost 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def base(root: Path) -> Path:
    return build_tiny_gemma3(root / "base")


@pytest.fixture(scope="module")
def images(root: Path) -> tuple[Path, Path]:
    """Two real NIH radiographs when the shared data is here, else two synthetic grey images."""
    if (NIH_IMAGES / URGENT_PNG).is_file() and (NIH_IMAGES / NORMAL_PNG).is_file():
        return NIH_IMAGES / URGENT_PNG, NIH_IMAGES / NORMAL_PNG
    from PIL import Image

    paths = (root / "a.png", root / "b.png")
    for i, path in enumerate(paths):
        Image.new("L", (96, 80), 60 + 80 * i).save(path)
    return paths


@pytest.fixture(scope="module")
def prompt_file(root: Path) -> Path:
    path = root / "prompt.txt"
    path.write_text(SHORT_PROMPT, encoding="utf-8")
    return path


def _record(image: Path, findings: list[TrainFinding], prompt_file: Path, id: str) -> SftRecord:
    fmt = BoxFormat()
    return new_record(
        id=id,
        source="test",
        image=str(image),
        group=id,
        findings=findings,
        prompt=grounding_prompt(fmt, prompt_file),
        fmt=fmt,
    )


@pytest.fixture(scope="module")
def records(images: tuple[Path, Path], prompt_file: Path) -> list[SftRecord]:
    return [
        _record(images[0], [TRAINED], prompt_file, "a"),
        _record(images[1], [], prompt_file, "b"),
    ]


def _config(base: Path, out: Path, **overrides: object) -> SftConfig:
    values: dict[str, object] = dict(
        base=str(base),
        train=out.with_suffix(".jsonl"),
        out=out,
        lr=1e-2,
        dropout=0.0,
        schedule="constant",
        device="cpu",
        save_every=2,
    )
    values.update(overrides)
    return SftConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def adapter(base: Path, root: Path, records: list[SftRecord]) -> Path:
    """One image memorised: 30 steps on its single record."""
    config = _config(base, root / "memorise", max_steps=30, save_every=100)
    write_records(config.train, records[:1])
    result = train(config)
    assert result.adapter is not None
    return result.adapter


@pytest.fixture(scope="module")
def merged(base: Path, adapter: Path, root: Path) -> Path:
    out = root / "merged"
    check = merge(str(base), adapter, out)
    assert check.ok
    return out


# --- the loss ---------------------------------------------------------------------------------------------


def test_only_the_assistant_turn_is_scored(base: Path, records: list[SftRecord]) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(base)  # type: ignore[no-untyped-call]
    batch = encode(processor, records[0])
    scored = batch["labels"][0] != IGNORE
    text = processor.tokenizer.decode(batch["input_ids"][0][scored])
    assert text == records[0].target() + "<end_of_turn>"
    first = int(scored.nonzero()[0])
    assert not scored[:first].any() and scored[first:].all()  # the prompt and the image, all masked
    assert batch["token_type_ids"][0][first:].eq(0).all()


def test_the_loss_falls_on_a_tiny_repeated_set(base: Path, root: Path, records: list[SftRecord]) -> None:
    config = _config(base, root / "falls", max_steps=8, save_every=100)
    write_records(config.train, records)
    result = train(config)
    losses = result.losses
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.2, losses
    log = [json.loads(line) for line in (config.out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(1, 9))
    assert all(e["tokens_per_s"] > 0 and e["target_tokens"] > 0 for e in log)
    run = json.loads((config.out / "run.json").read_text())
    assert run["config"]["rank"] == 16 and run["config"]["alpha"] == 16 and run["quantized_4bit"] is False


def test_a_resumed_run_equals_a_straight_one(base: Path, root: Path, records: list[SftRecord]) -> None:
    from safetensors.torch import load_file

    straight = _config(base, root / "straight", max_steps=4, dropout=0.1, grad_accum=2)
    write_records(straight.train, records)
    whole = train(straight)
    halves = _config(base, root / "halves", max_steps=2, dropout=0.1, grad_accum=2)
    write_records(halves.train, records)
    train(halves)
    with pytest.raises(TrainError, match="--resume"):
        train(halves)
    rest = train(_config(base, root / "halves", max_steps=4, dropout=0.1, grad_accum=2), resume=True)
    assert rest.resumed_from == 2
    assert rest.losses == pytest.approx(whole.losses[2:], rel=1e-5)
    a = load_file(str(root / "straight" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(root / "halves" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(TrainError, match="lr"):
        train(_config(base, root / "halves", max_steps=6, lr=1e-3, dropout=0.1, grad_accum=2), resume=True)


def test_4bit_is_refused_without_a_gpu_and_bitsandbytes() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(TrainError, match="CUDA"):
        wants_4bit("4bit", torch)
    assert wants_4bit("auto", torch) is False


# --- the merge and its check ----------------------------------------------------------------------------


def test_the_merge_is_verified_and_an_unmerged_copy_fails(
    base: Path, adapter: Path, merged: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = json.loads((merged / "merge.json").read_text())
    assert record["check"]["ok"] and record["check"]["weights_with_visible_change"] == 14
    assert record["trained"]["box_formats"] == ["yxyx@1"]
    assert not merged.with_name("merged.partial").exists()
    unmerged = verify_merge(str(base), adapter, base)
    assert not unmerged.ok and "not base + adapter" in unmerged.problems()[0]
    with pytest.raises(MergeError, match="FAILED"):
        unmerged.raise_if_failed(str(base))
    argv = f"train verify-merge --base {base} --adapter {adapter} --merged {base}".split()
    code, out, err = run_main(argv, capsys)
    assert code == 1 and json.loads(out)["ok"] is False and "merge check FAILED" in err
    argv = f"train verify-merge --base {base} --adapter {adapter} --merged {merged}".split()
    assert run_main(argv, capsys)[0] == 0
    with pytest.raises(TrainError, match="already exists"):
        merge(str(base), adapter, merged)


def test_a_merge_that_silently_does_nothing_fails_loudly(
    base: Path, adapter: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write-up's trap: the adapter is dropped instead of merged, and the base would be published."""
    from peft.tuners.lora import LoraModel

    monkeypatch.setattr(LoraModel, "merge_and_unload", lambda self, *a, **k: self.unload())
    out = root / "silent"
    with pytest.raises(MergeError, match="not base \\+ adapter"):
        merge(str(base), adapter, out)
    assert not out.exists()
    record = json.loads((root / "silent.partial" / "merge.json").read_text())
    assert record["check"]["ok"] is False


def _tensors(**named: list[float]) -> dict[str, object]:
    return {k: torch.tensor(v, dtype=torch.bfloat16) for k, v in named.items()}


@pytest.mark.parametrize(
    ("merged", "problem"),
    [
        ({"w": [1.25, -0.5, 2.0], "other": [3.0]}, None),  # base + delta
        ({"w": [1.0, -1.0, 2.0], "other": [3.0]}, "not base + adapter"),  # the base, unmerged
        ({"w": [1.5, 0.0, 2.0], "other": [3.0]}, "not base + adapter"),  # merged twice
        ({"w": [1.25, -0.5, 2.0], "other": [3.5]}, "outside the adapter changed"),
        ({"w": [1.25, -0.5, 2.0], "other": [3.0], "w.lora_A": [0.0]}, "still holds LoRA"),
        ({"other": [3.0]}, "absent from the merged model"),
    ],
)
def test_the_weight_check_table(merged: dict[str, list[float]], problem: str | None) -> None:
    base = _tensors(w=[1.0, -1.0, 2.0], other=[3.0])
    deltas = {"w": torch.tensor([0.25, 0.5, 0.0])}
    check = compare_weights(base, _tensors(**merged), deltas, "bfloat16")
    if problem is None:
        assert check.ok, check.problems()
    else:
        assert any(problem in p for p in check.problems()), check.problems()


def test_an_adapter_below_bf16_precision_cannot_be_verified() -> None:
    base = _tensors(w=[1.0, 2.0])
    check = compare_weights(base, base, {"w": torch.tensor([1e-5, 0.0])}, "bfloat16")
    assert not check.ok and "changes no element visibly" in check.problems()[0]


# --- the loop: the merged folder as CXR_AUDITOR_GROUNDER_MODEL ----------------------------------------------


def test_the_merged_model_grounds_what_it_learned(
    base: Path, merged: Path, images: tuple[Path, Path], prompt_file: Path
) -> None:
    def ground(model: Path) -> tuple[str, list[tuple[Label, list[float] | None]]]:
        settings = Settings(
            grounder="hf", grounder_model=str(model), grounder_prompt=prompt_file, device="cpu"
        )
        grounding = HFGrounder(settings).ground(load_image(images[0]))
        assert grounding.model.model_id == str(model)
        return grounding.raw_output or "", [
            (f.label, f.box.as_list() if f.box else None) for f in grounding.findings
        ]

    raw, findings = ground(merged)
    assert raw.strip() == _record(images[0], [TRAINED], prompt_file, "a").target()
    assert [label for label, _ in findings] == [TRAINED.label]
    assert findings[0][1] == pytest.approx(list(TRAINED.box))
    base_raw, _ = ground(base)
    assert base_raw.strip() != raw.strip()  # the random base says something else: the merge carried it


def test_the_commands_run_the_whole_path(
    base: Path, root: Path, records: list[SftRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    train_file = root / "cli.jsonl"
    write_records(train_file, records)
    run_dir, merged_dir = root / "cli_run", root / "cli_merged"
    argv = (
        f"train sft --base {base} --train {train_file} --out {run_dir} --max-steps 3 --lr 1e-2 "
        "--device cpu --save-every 2 --log-every 1"
    ).split()
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps"] == 3 and summary["tokens_per_s"] > 0 and "step 3/3 loss" in err
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
    code, out, err = run_main(
        f"train merge --base {base} --adapter {run_dir / 'adapter'} --out {merged_dir}".split(), capsys
    )
    assert code == 0, err
    assert json.loads(out)["ok"] is True and (merged_dir / "model.safetensors").is_file()
    shutil.rmtree(merged_dir)
