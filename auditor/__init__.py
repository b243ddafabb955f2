"""CXR Draft Auditor: a second look at chest X-ray draft impressions.

Research and educational QA only: not a medical device and not a diagnosis. Importing this package
never imports torch or mcp; heavy stacks load inside the backends on first use. Even ``__version__``
is looked up on first use: importlib.metadata costs ~20 ms, a tenth of a short command's whole run.
"""

from __future__ import annotations

from functools import cache


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cxr-draft-auditor")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'auditor' has no attribute {name!r}")
