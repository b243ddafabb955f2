"""`train corpus` and `train curate` on real annotations: ChestX-Det's boxes (its images are not shipped,
so a few are synthesised under their real names), the NIH radiographs with their radiologist boxes, and
a synthetic VinDr file for the licence. Every item is a record or an excluded count, and every target
comes back through recovery as the dataset's own gold. No torch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from auditor.eval.datasets import DatasetSpec, load_dataset
from auditor.prompts import grounding_prompt
from auditor.recovery import BoxFormat, recover_findings
from auditor.train.corpus import build_corpus
from auditor.train.records import read_records
from tests.conftest import NIH_IMAGES, SHARED
from tests.test_cli import run_main

CHESTX_DET = SHARED / "data" / "chestx_det" / "ChestX_Det_test.json"
NIH_BOXES = SHARED / "data" / "nih" / "BBox_List_2017.csv"
FMT = BoxFormat()
PROMPT = grounding_prompt(FMT)


def _png(path: Path, size: tuple[int, int] = (64, 64)) -> None:
    Image.new("L", size, 100).save(path)


def _gold(record_findings: list[tuple[str, list[float]]]) -> list[tuple[str, list[float]]]:
    return sorted((lb, [round(v, 3) for v in box]) for lb, box in record_findings)


def _recovered(target: str, fmt: BoxFormat) -> list[tuple[str, list[float]]]:
    return _gold([(f.label.value, f.box.as_list()) for f in recover_findings(target, fmt).findings if f.box])


@pytest.fixture(scope="module")
def chestx_det() -> Path:
    if not CHESTX_DET.is_file():
        pytest.skip(f"ChestX-Det annotations not found at {CHESTX_DET}")
    return CHESTX_DET


@pytest.fixture()
def chestx_images(chestx_det: Path, tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    """Stand-in pixels for two normal images, two with one effusion each, one with nodules and one with
    only labels outside the six."""
    records = json.loads(chestx_det.read_text(encoding="utf-8"))
    normal = [r for r in records if not r["syms"]][:2]
    effusion = [r for r in records if r["syms"] == ["Effusion"]][:2]
    nodule = next(r for r in records if set(r["syms"]) == {"Nodule"})
    outside = next(
        r for r in records if r["syms"] and set(r["syms"]) <= {"Fibrosis", "Emphysema", "Fracture"}
    )
    chosen = [*normal, *effusion, nodule, outside]
    folder = tmp_path / "images"
    folder.mkdir()
    for r in chosen:
        _png(folder / str(r["file_name"]))
    return folder, chosen


def test_chestx_det_records_carry_its_gold_and_count_every_item(
    chestx_det: Path, chestx_images: tuple[Path, list[dict[str, object]]]
) -> None:
    folder, chosen = chestx_images
    build, manifest = build_corpus([DatasetSpec("chestx-det", chestx_det)], folder, FMT, PROMPT)
    loaded = load_dataset(DatasetSpec("chestx-det", chestx_det))
    outside_six = sum(1 for i in loaded.items if i.normal is None)
    assert manifest["items"] == len(loaded.items) == manifest["records"] + sum(manifest["excluded"].values())
    assert manifest["records"] == len(chosen) - 1  # the image with only other labels is not a record
    assert manifest["excluded"]["only_labels_outside_the_six"] == outside_six
    assert manifest["excluded"]["image_not_found"] == len(loaded.items) - outside_six - manifest["records"]
    assert "Apache-2.0" in manifest["sources"][0]["licence"]["name"]
    assert manifest["non_commercial"] is False
    gold = {i.id: i for i in loaded.items}
    for record in build.records:
        item = gold[record.id]
        expected = _gold([(f.label.value, f.box.as_list()) for f in item.findings if f.box])
        assert _recovered(record.target(), FMT) == expected
        if item.normal:
            assert record.target() == '[{"label": "no_finding"}]'
        assert record.prompt == PROMPT.text and record.prompt_version == PROMPT.version


def test_nih_radiographs_make_records_grouped_by_patient() -> None:
    if not (NIH_BOXES.is_file() and NIH_IMAGES.is_dir()):
        pytest.skip(f"NIH boxes or images not found under {SHARED / 'data' / 'nih'}")
    fmt = BoxFormat("yxyx", 1000.0)
    build, manifest = build_corpus(
        [DatasetSpec("nih-bbox", NIH_BOXES)], NIH_IMAGES, fmt, grounding_prompt(fmt)
    )
    assert manifest["records"] >= 10  # the shared folder holds 12 radiographs with boxes
    assert manifest["box_format"] == "yxyx@1000"
    for record in build.records:
        assert Path(record.image).is_file()
        assert record.group == "nih:" + Path(record.image).name.split("_")[0]
        assert record.findings and '"box_2d": [' in record.target()
        assert [f.label for f in recover_findings(record.target(), fmt).findings] == [
            f.label for f in record.findings
        ]


def test_vindr_carries_its_non_commercial_licence(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _png(images / "abc.png", (200, 100))
    table = tmp_path / "train.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max"])
        for rad, dx in (("R1", 0), ("R2", 4), ("R3", 8)):  # three readers, one effusion
            w.writerow(["abc", rad, "Pleural effusion", 20 + dx, 10, 100 + dx, 60])
    build, manifest = build_corpus([DatasetSpec("vindr", table)], images, FMT, PROMPT)
    assert manifest["non_commercial"] is True
    assert "non-commercial" in manifest["sources"][0]["licence"]["terms"]
    assert len(build.records) == 1 and len(build.records[0].findings) == 1  # readers merged by the reader


def test_corpus_and_curate_commands_write_an_evaluable_heldout_split(
    chestx_det: Path,
    chestx_images: tuple[Path, list[dict[str, object]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = chestx_images
    corpus, curated = tmp_path / "corpus", tmp_path / "curated"
    argv = f"train corpus --dataset chestx-det:{chestx_det} --images {folder} --out {corpus}".split()
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    assert json.loads(out)["records"] == 5
    code, out, err = run_main(f"train curate --corpus {corpus} --out {curated} --heldout 0.5".split(), capsys)
    assert code == 0, err
    summary = json.loads(out)
    # 3 positives and 2 normals (ratio 1 keeps both); each stratum of two groups holds one out
    assert summary["images"] | {"train": 3, "heldout": 2, "kept": 5} == summary["images"]
    report = json.loads((curated / "curation.json").read_text(encoding="utf-8"))
    assert report["images"] == summary["images"]
    heldout = list(read_records(curated / "heldout.jsonl"))
    assert sorted(r.labels for r in heldout) == [("no_finding",), ("pleural_effusion",)]
    kind, _, path = summary["eval_dataset"].partition(":")
    evaluable = load_dataset(DatasetSpec(kind, Path(path)))
    assert [i.image for i in evaluable.items] == [Path(r.image).name for r in heldout]
    for record, item in zip(heldout, evaluable.items, strict=True):
        assert item.normal is record.normal
        got = [(f.label, v) for f in item.findings if f.box for v in f.box.as_list()]
        want = [(f.label, v) for f in record.findings for v in f.box]
        assert [lb for lb, _ in got] == [lb for lb, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-12)
    manifest = json.loads((curated / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["curation"]["images"] == report["images"] and manifest["sources"]


def test_corpus_refuses_report_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(
        [
            "train",
            "corpus",
            "--dataset",
            "openi:x.csv",
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 2 and "no boxes" in err


def test_the_train_commands_cost_other_commands_nothing() -> None:
    """The full parser (the help) registers `train` without importing torch, transformers or peft, and
    `serve` does not even import the train package."""
    import subprocess
    import sys

    def loaded(argv: list[str] | None) -> str:
        code = (
            "import sys\n"
            "from mcp_server.cli import build_parser\n"
            f"build_parser({argv!r})\n"
            "names = ('torch', 'transformers', 'peft', 'auditor.train.cli')\n"
            "print(sorted(m for m in names if m in sys.modules))"
        )
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert loaded(None).strip() == "['auditor.train.cli']"
    assert loaded(["serve"]).strip() == "[]"
