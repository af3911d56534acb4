"""What the parts of one sync run share, handed to each in one piece.

The engine builds one `RunContext` a run; the pusher, the bulk loader and the puller each take
it (`Pusher(run)`), so a new part or a new shared setting is one change here, not a seventh
positional argument to keep in step across three constructors and their callers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync._capabilities import Capabilities
from sync._client import FhirClient
from sync._ports import SyncStore
from sync._report import Progress, SyncOptions, SyncReport


@dataclass(frozen=True, slots=True)
class RunContext:
    """`report` is the run's one report, which every part adds its counts to; `run_number`
    counts completed runs (the periodic id reconciliation and bulk markers read it)."""

    client: FhirClient
    store: SyncStore
    caps: Capabilities
    options: SyncOptions
    report: SyncReport
    progress: Progress
    run_number: int = 0


class RunPart:
    """A part of a run (push, bulk load, pull): the context's fields as its own attributes."""

    def __init__(self, run: RunContext) -> None:
        self.client = run.client
        self.store = run.store
        self.caps = run.caps
        self.options = run.options
        self.report = run.report
        self.progress = run.progress
        self.run_number = run.run_number
