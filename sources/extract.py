"""The extraction engine (being built): HubSpot pages -> mirror, cursor saved with each page."""

from __future__ import annotations


def execute_run(*, run_id: int) -> None:
    raise NotImplementedError("the extraction engine is being built")
