"""Will a checkpoint fit? Asked before loading, so a model that cannot fit fails at once with a clear
message and a way out, instead of an out-of-memory kill halfway through a multi-GB load.

The size comes from the safetensors headers (no weights read); the room from the CUDA driver (free
device memory) or, on CPU, /proc/meminfo's MemAvailable. A checkpoint that is not a local folder (a hub
id not yet resolved) is not checked here: transformers reports its own errors for those.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

HEADROOM: Final = 1.10
"""Weights plus 10%: activations, the KV cache of one audit and allocator slack."""

_DTYPE_BYTES: Final = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def checkpoint_elements(folder: Path) -> dict[str, int] | None:
    """Tensor elements per stored dtype in a local checkpoint folder, or None when it has no
    readable safetensors (not a folder, another format, or a hub id)."""
    shards = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not shards:
        return None
    counts: dict[str, int] = {}
    try:
        for shard in shards:
            with shard.open("rb") as fh:
                header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                n = 1
                for dim in meta["shape"]:
                    n *= int(dim)
                counts[meta["dtype"]] = counts.get(meta["dtype"], 0) + n
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return counts


def bytes_needed(elements: dict[str, int], target_bytes: int) -> int:
    """Bytes once loaded: floating tensors take the target dtype's size, others keep their own."""
    total = 0
    for dtype, n in elements.items():
        float_type = dtype in ("F64", "F32", "F16", "BF16")
        total += n * (target_bytes if float_type else _DTYPE_BYTES.get(dtype, 4))
    return total


def cpu_available_bytes(meminfo: str | None = None) -> int | None:
    """MemAvailable from /proc/meminfo (what can be had without swapping), or None off Linux."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text(encoding="utf-8")
        except OSError:
            return None
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def shortfall(needed: int, available: int | None) -> bool:
    """True when the weights (with headroom) cannot fit in what is available."""
    return available is not None and needed * HEADROOM > available


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
