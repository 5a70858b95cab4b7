"""Thin tasks: take an id, call the engine."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="sources.run_sync", acks_late=True)
def run_sync(run_id: int) -> None:
    from .extract import execute_run

    execute_run(run_id=run_id)
