#!/usr/bin/env bash
# Download, here, the pure-Python dependencies the GPU machine lacks (its image has torch, transformers,
# accelerate, numpy, pillow and httpx, but no pydantic), as wheels for its CPython 3.12 on x86-64, into
# .whl/ (ignored by git: add "/.whl/" to .git/info/exclude). bench/device_run.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
ls .whl
