"""Dataset readers: NIH BBox_List_2017.csv, ChestX-Det JSON, VinDr-CXR train.csv (with its reader-merge
rule) and Open-i; every label name accounted for, boxes normalised, nothing dropped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.eval.boxes import merge_boxes, merge_clusters, pixel_box
from auditor.eval.chestx_det import chestx_det_items
from auditor.eval.datasets import DatasetSpec, load_all, load_dataset, parse_spec
from auditor.eval.nih import nih_items
from auditor.eval.vindr import vindr_items
from auditor.labels import Label

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
NIH_CSV = DATA / "nih" / "BBox_List_2017.csv"
CHESTX_TRAIN = DATA / "chestx_det" / "ChestX_Det_train.json"
CHESTX_TEST = DATA / "chestx_det" / "ChestX_Det_test.json"

NIH_HEADER = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""]


# --- boxes ------------------------------------------------------------------------------------------------


def test_pixel_box_normalises_clips_and_refuses() -> None:
    ok = pixel_box(256, 512, 512, 768, 1024, 1024)
    assert ok.box is not None and ok.box.as_list() == [0.25, 0.5, 0.5, 0.75] and not ok.clipped
    clipped = pixel_box(-10, 0, 100, 1030, 1000, 1000)
    assert clipped.box is not None and clipped.clipped and clipped.box.as_list() == [0.0, 0.0, 0.1, 1.0]
    empty = pixel_box(10, 10, 10, 50, 100, 100)
    assert empty.box is None and empty.problem and "empty" in empty.problem


def test_union_find_merge_is_transitive_and_uses_the_mean() -> None:
    # A~B (IoU 0.667) and B~C (IoU 0.667) but A and C overlap only 0.333: still one cluster
    a, b, c = [0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10]
    far = [50, 50, 60, 60]
    arr = np.array([a, far, b, c], dtype=float)
    assert merge_clusters(arr, 0.5) == [[0, 2, 3], [1]]
    merged = merge_boxes(arr, 0.5)
    assert merged.tolist() == [[2.0, 0.0, 12.0, 10.0], far]  # coordinate-wise mean, not the union [0, 14]


def test_merge_threshold_is_inclusive() -> None:
    # IoU exactly 0.5: [0, 12] and [4, 12] on x overlap 8 of 12... use [0,10] and [0,5]: 5/10 = 0.5
    arr = np.array([[0, 0, 10, 10], [0, 0, 5, 10]], dtype=float)
    assert merge_clusters(arr, 0.5) == [[0, 1]]


# --- NIH --------------------------------------------------------------------------------------------------


def test_nih_rows() -> None:
    rows = [
        NIH_HEADER,
        ["a.png", "Effusion", "512", "256", "256", "512"],
        ["a.png", "Atelectasis", "10", "10", "20", "20"],
        ["b.png", "Atelectasis", "10", "10", "20", "20"],
        ["c.png", "Infiltrate", "1000", "1000", "100", "100"],  # runs off the 1024 frame: clipped
        ["d.png", "Mystery", "1", "1", "2", "2"],
    ]
    items, stats = nih_items(rows)
    by_id = {i.id: i for i in items}
    assert [i.id for i in items] == ["a.png", "b.png", "c.png", "d.png"]
    a = by_id["a.png"]
    assert [(f.label, f.source) for f in a.findings] == [(Label.PLEURAL_EFFUSION, "Effusion")]
    box = a.findings[0].box
    assert box is not None and box.as_list() == [0.5, 0.25, 0.75, 0.75]
    assert a.other == ("Atelectasis",) and a.normal is False
    # an image with only a dropped label is an item, with unknown no_finding gold
    assert by_id["b.png"].findings == () and by_id["b.png"].normal is None
    assert by_id["b.png"].gold()[Label.NO_FINDING] is None
    assert by_id["b.png"].gold()[Label.PLEURAL_EFFUSION] is False
    assert stats.boxes_clipped == 1
    assert dict(stats.labels.dropped) == {"Atelectasis": 2}
    assert dict(stats.labels.unknown) == {"Mystery": 1}  # counted, reported, not lost
    assert by_id["d.png"].normal is None
    assert stats.rows == 5


@pytest.mark.parametrize(
    "row",
    [
        ["a.png", "Effusion", "x", "1", "2", "3"],
        ["a.png", "Effusion", "1", "2", "3"],
        ["a.png", "", "1", "1", "1", "1"],
    ],
)
def test_nih_bad_rows_name_the_row(row: list[str]) -> None:
    with pytest.raises(ValueError, match=r"nih\.csv:2"):
        nih_items([NIH_HEADER, row], "nih.csv")


@pytest.mark.skipif(not NIH_CSV.is_file(), reason=f"shared NIH boxes not found at {NIH_CSV}")
def test_nih_real_file() -> None:
    ds = load_dataset(DatasetSpec("nih-bbox", NIH_CSV))
    assert ds.stats.rows == 984 and len(ds.items) == 880
    labels = ds.stats.labels
    assert sum(labels.mapped.values()) + sum(labels.dropped.values()) + sum(labels.unknown.values()) == 984
    assert dict(labels.dropped) == {"Atelectasis": 180} and not labels.unknown
    assert ds.stats.boxes_out == 984 - 180


# --- ChestX-Det -------------------------------------------------------------------------------------------


def test_chestx_det_records() -> None:
    records = [
        {"file_name": "1.png", "syms": [], "boxes": [], "polygons": []},
        {
            "file_name": "2.png",
            "syms": ["Effusion", "Fracture", "Mass"],
            "boxes": [[0, 0, 512, 1024], [1, 1, 5, 5], [600, 100, 700, 200]],
        },
        {"file_name": "3.png", "syms": ["Fracture"], "boxes": [[1, 1, 5, 5]]},
    ]
    items, stats = chestx_det_items(records)
    assert [i.normal for i in items] == [True, False, None]  # empty syms = no finding
    assert [f.label for f in items[1].findings] == [Label.PLEURAL_EFFUSION, Label.NODULE_MASS]
    assert items[1].other == ("Fracture",)
    assert dict(stats.labels.dropped) == {"Fracture": 2}
    assert stats.boxes_in == stats.boxes_out == 2


@pytest.mark.parametrize(
    "record",
    [
        {"file_name": "x.png", "syms": ["Effusion"], "boxes": []},
        {"file_name": "x.png", "syms": ["Effusion"], "boxes": [[1, 2, 3]]},
        {"syms": [], "boxes": []},
        ["x.png"],
    ],
)
def test_chestx_det_malformed(record: object) -> None:
    with pytest.raises(ValueError, match=r"cx\.json\[0\]"):
        chestx_det_items([record], "cx.json")


def test_chestx_det_duplicate_file_name() -> None:
    rec = {"file_name": "1.png", "syms": [], "boxes": []}
    with pytest.raises(ValueError, match="twice"):
        chestx_det_items([rec, rec])


@pytest.mark.skipif(not CHESTX_TEST.is_file(), reason=f"shared ChestX-Det not found at {CHESTX_TEST}")
def test_chestx_det_real_files_join_without_collisions() -> None:
    items, loaded = load_all(
        [DatasetSpec("chestx-det", CHESTX_TRAIN), DatasetSpec("chestx-det", CHESTX_TEST)]
    )
    assert [len(d.items) for d in loaded] == [3025, 553] and len(items) == 3578
    assert sum(i.normal is True for i in items) == 547 + 64


# --- VinDr ------------------------------------------------------------------------------------------------


def vrow(image: str, name: str, rad: str, box: list[float] | None) -> dict[str, str | None]:
    cells = [str(v) for v in box] if box else ["", "", "", ""]
    return dict(
        zip(
            ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"],
            [image, name, "0", rad, *cells],
            strict=True,
        )
    )


def test_vindr_merges_readers_and_maps_before_merging() -> None:
    rows = [
        vrow("img1", "Consolidation", "R1", [100, 100, 300, 300]),
        vrow("img1", "Lung Opacity", "R2", [110, 100, 310, 300]),  # other name, same label, same region
        vrow("img1", "Lung Opacity", "R3", [700, 700, 800, 800]),  # same label elsewhere: its own finding
        vrow("img1", "Aortic enlargement", "R1", [400, 100, 500, 200]),
        vrow("img2", "No finding", "R1", None),
        vrow("img2", "No finding", "R2", None),
        vrow("img3", "No finding", "R1", None),
        vrow("img3", "Atelectasis", "R2", [1, 1, 20, 20]),
    ]
    items, stats = vindr_items(rows, {"img1": (1000.0, 1000.0), "img2": (500, 500), "img3": (500, 500)})
    img1, img2, img3 = items
    assert [f.label for f in img1.findings] == [Label.LUNG_OPACITY_CONSOLIDATION] * 2
    first = img1.findings[0].box
    assert first is not None and first.as_list() == pytest.approx([0.105, 0.1, 0.305, 0.3])
    assert img1.findings[0].source == "Consolidation/Lung Opacity"
    assert img1.other == ("Aortic enlargement",) and img1.normal is False
    assert img2.normal is True and img2.findings == ()
    assert img3.normal is None  # one reader saw only a label outside the six
    assert (stats.boxes_in, stats.boxes_out) == (3, 2)
    assert dict(stats.labels.mapped) == {"Consolidation": 1, "Lung Opacity": 2, "No finding": 3}


def test_vindr_missing_or_wrong_size_is_an_item_problem_not_a_skip() -> None:
    rows = [
        vrow("big", "Pleural effusion", "R1", [2000, 2000, 2400, 2600]),
        vrow("nosize", "Cardiomegaly", "R1", [1, 1, 9, 9]),
    ]
    items, _ = vindr_items(rows, {"big": (1024, 1024)})
    big, nosize = items
    assert big.problem is not None and "resized" in big.problem
    assert nosize.problem is not None and "no image size" in nosize.problem
    assert [f.label for f in nosize.findings] == [Label.CARDIOMEGALY] and nosize.findings[0].box is None


def test_vindr_sizes_from_csv_and_from_images(tmp_path: Path) -> None:
    csv_path = tmp_path / "train.csv"
    header = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
    csv_path.write_text(header + "abc,Pneumothorax,12,R1,10,10,50,90\n", encoding="utf-8")
    sizes = tmp_path / "sizes.csv"
    sizes.write_text("image_id,width,height\nabc,100,200\n", encoding="utf-8")
    ds = load_dataset(parse_spec(f"vindr:{csv_path}"), sizes=sizes)
    box = ds.items[0].findings[0].box
    assert box is not None and box.as_list() == pytest.approx([0.1, 0.05, 0.5, 0.45])
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (100, 200)).save(images / "abc.png")
    from_images = load_dataset(parse_spec(f"vindr:{csv_path}"), images=images)
    assert from_images.items[0].findings == ds.items[0].findings
    neither = load_dataset(parse_spec(f"vindr:{csv_path}"))
    assert neither.items[0].problem is not None


# --- specs and joins --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["nih:x.csv", "chestx-det", "vindr:", "openi"])
def test_bad_specs(text: str) -> None:
    with pytest.raises(ValueError, match="KIND:PATH"):
        parse_spec(text)


def test_the_same_id_in_two_datasets_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"file_name": "1.png", "syms": [], "boxes": []}]), encoding="utf-8")
    with pytest.raises(ValueError, match="in both"):
        load_all([DatasetSpec("chestx-det", path), DatasetSpec("chestx-det", path)])


def test_openi_items_keep_blank_gold_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "openi.csv"
    path.write_text(
        "uid,text,pleural_effusion,pneumothorax,lung_opacity_consolidation,nodule_mass,cardiomegaly,no_finding\n"
        '7,"Small left effusion.",1,,0,0,0,0\n',
        encoding="utf-8",
    )
    ds = load_dataset(parse_spec(f"openi:{path}"))
    gold = ds.items[0].gold()
    assert gold[Label.PLEURAL_EFFUSION] is True and gold[Label.PNEUMOTHORAX] is None
    assert gold[Label.NO_FINDING] is False
