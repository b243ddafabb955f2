"""CXR Draft Auditor: a second look at chest X-ray draft impressions.

Research and educational QA only: not a medical device and not a diagnosis. Importing this package
never imports torch or mcp; heavy stacks load inside the backends on first use.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxr-draft-auditor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
