"""The delivery engine: a mapping's mirror rows past its watermark become Segment messages, sent in batches.

messages (what is sent) → sender and checkpoint (how it is sent, what is recorded) → runs (one run per mapping)
→ engine (the loop) → triggers (which deliveries start). The names below are the package's interface.
"""

from __future__ import annotations

from .checkpoint import RUN_COUNT_FIELDS
from .engine import deliver
from .messages import DELIVERED_BEFORE, MessageBuilder, archived_skip_reason, preview_message
from .triggers import (
    collections_behind,
    deliver_collections,
    deliveries_after_sync,
    enqueue_deliveries,
    sync_in_foreground,
)

__all__ = [
    "DELIVERED_BEFORE",
    "RUN_COUNT_FIELDS",
    "MessageBuilder",
    "archived_skip_reason",
    "collections_behind",
    "deliver",
    "deliver_collections",
    "deliveries_after_sync",
    "enqueue_deliveries",
    "preview_message",
    "sync_in_foreground",
]
