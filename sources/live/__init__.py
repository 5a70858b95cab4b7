"""Near-real-time updates: HubSpot's webhooks -> targeted reads -> the mirror -> the deliveries, in seconds.

The way an event goes:

1. **Receiver** (`POST /hooks/hubspot/`, sources.views.hooks): HubSpot POSTs a JSON array of up to 100 events,
   signed (v3: see `wire`). The view checks the body size (413), the signature and its timestamp (401: bad,
   missing or older than 5 minutes), refuses a replay of the same signed request (409), then `receive` routes
   each event by ``portalId`` to the enabled sources of that HubSpot account (Source.hub_id; several sources may
   share an account) that have live updates on and sync the event's collection, and stores them in **one**
   INSERT ... ON CONFLICT DO NOTHING (unique per source and ``eventId``: duplicates and HubSpot's retries are
   stored once and counted). 200 at once: no HubSpot or Segment I/O in the request.
2. **Coalescing**: the first new event of a (source, collection) schedules the live task HUBSYNC_LIVE_COALESCE_
   SECONDS later (a cache key per pair); the events arriving meanwhile ride with it.
3. **Targeted reads** (`apply`): the task claims the pending events, reads their ids with batch read (100 per
   request, through the shared limiter) and commits what HubSpot answers through the scheduled engine's page
   transaction (change_seq, history, merges); ids not answered go through the deletion confirmation (archived,
   deleted for good, merged). A row is never overwritten by an older read (HubSpot's updatedAt decides). Then
   the "mirror changed" hand-off: the affected mappings deliver at once.
4. **Safety net**: the scheduled syncs stay (a missed webhook costs at most one interval); every minute the
   dispatcher re-schedules events left pending or claimed by a worker that died, and prunes old applied events.

Event kinds: creation, propertyChange, restore and merge (its ``newObjectId``, ``primaryObjectId`` and
``mergedObjectIds`` are all read) lead to reads; deletion and privacyDeletion to the same reads, whose missing
ids are then confirmed gone. The record read from HubSpot is the truth, whatever the event said.
"""

from __future__ import annotations

from .apply import Applied, LiveWrites, apply_pending, prune, sweep
from .receive import Received, schedule, seen_before, store_events
from .wire import Event, SignatureError, parse_event, sign, verify

__all__ = [
    "Applied",
    "Event",
    "LiveWrites",
    "Received",
    "SignatureError",
    "apply_pending",
    "parse_event",
    "prune",
    "schedule",
    "seen_before",
    "sign",
    "store_events",
    "sweep",
    "verify",
]
