"""The extraction engine: HubSpot pages -> mirror, the cursor saved in the same transaction as each page.

A run (`engine`), per selected collection: discover the property schema (`mirror.store_schema`); read what the
collection's cursor says is next (`reads`: the list endpoint, search windows, batch reads); write HubSpot's
archived records with their final values (`reads.Reads.scan_archived`); on a full read, look for records deleted
or merged away in HubSpot (`deletions`). Every page is one transaction (`mirror`); a background thread
(`prefetch`) awaits HubSpot's next page while the current one is written. A full read of a big collection (and an
incremental one that a re-read beats) is partitioned (`partitions`, planned by `plan`): id ranges read
concurrently by fetcher threads through the list and search budgets at once, each range checkpointed on its own
sources.ReadPartition row, the collections of the run together, other workers helping (`execute_partitions`).
"""

from __future__ import annotations

from .base import RunLost, notify_changes
from .deletions import BATCH_READ_LIMIT, ORDER_NOTE
from .engine import Engine, claim_run, execute_partitions, execute_run, execute_run_foreground
from .mirror import Gone, after_page, normalize_schema, store_schema
from .reads import LIST_LIMIT, SEARCH_LIMIT, ids_pass_estimates
from .records import MERGED_IDS, content_hash, lastmod_property, merged_away, properties_json

__all__ = [
    "BATCH_READ_LIMIT",
    "LIST_LIMIT",
    "MERGED_IDS",
    "ORDER_NOTE",
    "SEARCH_LIMIT",
    "Engine",
    "Gone",
    "RunLost",
    "after_page",
    "claim_run",
    "content_hash",
    "execute_partitions",
    "execute_run",
    "execute_run_foreground",
    "ids_pass_estimates",
    "lastmod_property",
    "merged_away",
    "normalize_schema",
    "notify_changes",
    "properties_json",
    "store_schema",
]
