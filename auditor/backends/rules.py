"""The rule reader as a DraftReader backend: deterministic, CPU-only, always available."""

from __future__ import annotations

from auditor.backends import BackendState
from auditor.draft_rules import RULESET_VERSION, read_draft
from auditor.schema import DraftReading


class RulesReader:
    """Wraps `auditor.draft_rules.read_draft`; nothing to load."""

    def read(self, draft: str) -> DraftReading:
        return read_draft(draft)

    def load(self) -> None:
        return None

    def state(self) -> BackendState:
        return BackendState(
            role="reader", backend="rules", model_id=RULESET_VERSION, loaded=True, device="cpu"
        )
