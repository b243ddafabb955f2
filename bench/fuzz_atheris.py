"""Coverage-guided fuzzing (atheris, libFuzzer) of the three parsers that take untrusted bytes:
the rule reader, the recovery parser, and image decoding. Any exception other than the documented
ImageError is a crash; a run that finds none prints libFuzzer's summary.

Run (pip install atheris): python bench/fuzz_atheris.py {reader|recovery|image} -runs=200000
(any libFuzzer flag works, e.g. -max_total_time=60). Not part of the test suite: hypothesis
covers the same properties there; this digs deeper when there is time to spend.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from auditor.draft_rules import read_draft
    from auditor.images import ImageError, ImageLimits, load_image_bytes
    from auditor.recovery import recover_findings, recover_mentions
    from auditor.schema import DraftReading

LIMITS = ImageLimits(max_pixels=4_000_000, max_side=4096)


def fuzz_reader(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(4096)
    reading = read_draft(text)
    DraftReading.model_validate(reading.model_dump())  # raises if a span is not verbatim


def fuzz_recovery(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    raw = fdp.ConsumeUnicodeNoSurrogates(4096)
    recover_findings(raw)
    recover_mentions(raw, fdp.ConsumeUnicodeNoSurrogates(512))


def fuzz_image(data: bytes) -> None:
    with contextlib.suppress(ImageError):
        load_image_bytes(data, LIMITS)


TARGETS = {"reader": fuzz_reader, "recovery": fuzz_recovery, "image": fuzz_image}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer flags]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
