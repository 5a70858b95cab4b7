"""Typed hooks: how a higher app reacts, in the same transaction, to something a lower app does, and how it
contributes to a lower app's pages.

A lower app never imports a higher one. Where a reaction must happen inside the lower app's transaction (the
records HubSpot deleted are gone from the mirror, so their delivery states must lose their payload in the same
commit), the lower app sends a hook and the higher app connects a receiver in its `AppConfig.ready()`. Work
that can happen later goes by Celery task name instead (hubsync.handoff); the beat dispatcher's list is
hubsync.dispatch.

Receivers run in the order they were connected and an exception propagates to the sender: a same-transaction
reaction that fails rolls the change back with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

R = TypeVar("R", bound=Callable[..., Any])


class Hook(Generic[R]):
    """A named list of receivers of one signature `R` (a Protocol naming the keyword arguments)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[R] = []

    def connect(self, receiver: R) -> R:
        """Add a receiver (usable as a decorator). Connecting the same function twice keeps one entry."""
        if receiver not in self._receivers:
            self._receivers.append(receiver)
        return receiver

    def disconnect(self, receiver: R) -> None:
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    @property
    def receivers(self) -> tuple[R, ...]:
        return tuple(self._receivers)

    @property
    def send(self) -> R:
        """Call every receiver with these arguments (type-checked against `R`)."""

        def fan_out(*args: Any, **kwargs: Any) -> None:
            for receiver in self._receivers:
                receiver(*args, **kwargs)

        return cast(R, fan_out)

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {len(self._receivers)} receivers>"


# --- same-transaction reactions ------------------------------------------------------------------------------


class RecordsDeleted(Protocol):
    def __call__(self, *, source_id: int, collection: str, object_ids: list[int], removed: int) -> None:
        """HubSpot confirmed these records gone for good; `removed` of them had mirror rows, just deleted."""


class RecordsMerged(Protocol):
    def __call__(self, *, source_id: int, collection: str, object_ids: list[int]) -> None:
        """HubSpot merged these records into others; their mirror rows were just removed (history kept)."""


class SchemaDiscovered(Protocol):
    def __call__(self, *, source_collection: Any, old: dict, new: dict) -> object:
        """A collection's property schema was read again and differs from `old` (before any page of the run).
        What a receiver returns is ignored."""


records_deleted: Hook[RecordsDeleted] = Hook("records_deleted")
records_merged: Hook[RecordsMerged] = Hook("records_merged")
schema_discovered: Hook[SchemaDiscovered] = Hook("schema_discovered")


# --- UI contributions --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupStep:
    """One line of a source's setup checklist (the setup order the product enforces)."""

    order: int  # position in the checklist
    key: str
    title: str
    done: bool
    help: str  # what to do when not done
    url: str


class SetupSteps(Protocol):
    def __call__(self, source: Any) -> list[SetupStep]:
        """The steps this app contributes to `source`'s checklist."""


setup_steps: Hook[SetupSteps] = Hook("setup_steps")
