"""`cxr-auditor audit-batch`: audit a day's worklist in one run, resumably, with a report to open.

Along its seams:

- ``worklist``: reading and checking a CSV or JSONL worklist into studies;
- ``store``: the run folder's ``results.jsonl`` (one typed `ResultLine` per study) and resuming;
- ``pictures``: each study's picture and the thumbnail the report embeds;
- ``runner``: auditing the studies not yet finished, then the summary and the report;
- ``command``: the command line (flags, checks before any work, exit statuses).

The names other modules and the tests use are re-exported here. Research and educational QA only:
not a medical device and not a diagnosis.
"""

from auditor.batch.pictures import PICTURE_BYTES, PICTURE_SIDE
from auditor.batch.runner import BatchOptions, in_flight, run_batch
from auditor.batch.store import PICTURES, REPORT, RESULTS, SUMMARY, ResultLine, backend_fingerprint, summarize
from auditor.batch.worklist import Study, read_worklist
from auditor.runfolder import LOCK_FILE as LOCK

__all__ = [
    "LOCK",
    "PICTURES",
    "PICTURE_BYTES",
    "PICTURE_SIDE",
    "REPORT",
    "RESULTS",
    "SUMMARY",
    "BatchOptions",
    "ResultLine",
    "Study",
    "backend_fingerprint",
    "in_flight",
    "read_worklist",
    "run_batch",
    "summarize",
]
