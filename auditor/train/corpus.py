"""`train corpus`: the box datasets we already read for evaluation -> SFT records and a manifest.

The evaluation readers (`auditor.eval.datasets`) do the parsing, label mapping and box normalisation,
so a model is trained on exactly the gold it will later be scored against. An item that cannot become
a training example is counted under its reason and named, never skipped silently: a missing image, a
finding without a usable box, an image whose only labels lie outside the six (its no_finding gold is
unknown, and teaching it as normal would teach the model to call atelectasis normal), or a reader
problem (a VinDr image without its original size). ``items == records + excluded`` always.

The manifest carries each source's licence. VinDr-CXR's Data Use Agreement is non-commercial research
only, whatever tag a downstream mirror carries: a corpus (and a model) built from it inherits that.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from auditor.eval.datasets import DatasetSpec, load_all
from auditor.eval.grounders import find_image
from auditor.eval.items import EvalItem
from auditor.prompts import Prompt
from auditor.recovery import BoxFormat
from auditor.train.records import SftRecord, new_record
from auditor.train.targets import TrainFinding, format_name

LICENCES: Final[dict[str, dict[str, Any]]] = {
    "vindr": {
        "name": "VinDr-CXR (PhysioNet Data Use Agreement)",
        "terms": "non-commercial research only; a CC0 tag on a downstream mirror does not override the "
        "DUA. Keep the corpus and its pixels private; a model trained on it is for research only.",
        "non_commercial": True,
    },
    "chestx-det": {
        "name": "ChestX-Det annotations (Deepwise AI Lab), Apache-2.0; images are NIH ChestX-ray14",
        "terms": "Apache-2.0 for the boxes; cite the ChestX-Det paper and Wang et al., CVPR 2017.",
        "non_commercial": False,
    },
    "nih-bbox": {
        "name": "NIH ChestX-ray14 BBox_List_2017",
        "terms": "no restrictions on use; cite Wang et al., CVPR 2017; acknowledge the NIH Clinical Center.",
        "non_commercial": False,
    },
}
"""What each source allows. Data people extend: a new dataset kind gets its licence here."""

EXAMPLES_PER_REASON: Final = 10


@dataclass
class CorpusBuild:
    """The records and an account of every item that did not become one."""

    records: list[SftRecord] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def exclude(self, item: EvalItem, reason: str) -> None:
        self.excluded[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(item.id)


def group_of(kind: str, image: str) -> str:
    """Images that must stay on one side of the split: an NIH patient (``00000013_005`` -> ``00000013``).
    ChestX-Det renamed its NIH images and VinDr ids are per study, so there each image is its own group."""
    if kind == "nih-bbox":
        return f"nih:{image.split('_', 1)[0]}"
    return f"{kind}:{image}"


def _why_not(item: EvalItem) -> str | None:
    if item.problem is not None:
        return "dataset_problem"
    if item.image is None:
        return "no_image_named"
    if item.normal is None:
        return "only_labels_outside_the_six"
    if any(f.box is None for f in item.findings):
        return "finding_without_usable_box"
    return None


def build_corpus(
    specs: list[DatasetSpec],
    images: Path,
    fmt: BoxFormat,
    prompt: Prompt,
    *,
    sizes: Path | None = None,
) -> tuple[CorpusBuild, dict[str, Any]]:
    """Records for every usable item of every dataset, and the manifest that describes them."""
    items, loaded = load_all(specs, sizes=sizes, images=images)
    owner = {item.id: ds.spec for ds in loaded for item in ds.items}
    build = CorpusBuild()
    for item in items:
        reason = _why_not(item)
        path = find_image(images, item.image) if reason is None and item.image else None
        if path is None:
            build.exclude(item, reason or "image_not_found")
            continue
        spec = owner[item.id]
        findings = [
            TrainFinding(f.label, (f.box.x0, f.box.y0, f.box.x1, f.box.y1))
            for f in item.findings
            if f.box is not None
        ]
        build.records.append(
            new_record(
                id=item.id,
                source=str(spec),
                image=str(path.resolve()),
                group=group_of(spec.kind, item.image or item.id),
                findings=findings,
                prompt=prompt,
                fmt=fmt,
            )
        )
    sources = [{**ds.describe(), "licence": LICENCES.get(ds.spec.kind)} for ds in loaded]
    manifest = {
        "what": "chat-format SFT records for the grounder (records.jsonl); images referenced, not copied",
        "box_format": format_name(fmt),
        "prompt_version": prompt.version,
        "images": str(images.resolve()),
        "sources": sources,
        "items": len(items),
        "records": len(build.records),
        "excluded": dict(sorted(build.excluded.items())),
        "excluded_examples": build.examples,
        "images_per_label": dict(sorted(Counter(lb for r in build.records for lb in r.labels).items())),
        "boxes_per_label": dict(
            sorted(Counter(f.label.value for r in build.records for f in r.findings).items())
        ),
        "non_commercial": any(LICENCES.get(ds.spec.kind, {}).get("non_commercial") for ds in loaded),
    }
    return build, manifest
