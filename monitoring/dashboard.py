"""What the dashboard shows: health per source and per mapping, counts, freshness, live progress and charts data
(the workers panel is monitoring.workers).

Everything here is computed with a constant number of queries whatever the size of the mirror or the number of
runs: rows come from one query per kind (sources, mappings) with the latest run joined and the "first change not
yet delivered" looked up by a correlated subquery on the (source, change_seq) index; the big counts (records in
the mirror, delivered / rejected states) are read from counter rows that database triggers keep exact
(hubsync.counters), so no page load ever counts the mirror.
"""

from __future__ import annotations

from collections import abc
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count, OuterRef, Subquery, Sum
from django.utils import timezone

from hubsync.models import Workspace
from mappings.models import DeliveryRun, DeliveryStateCount, Mapping, MappingIssue
from sources.hubspot.meter import WINDOWS_MS, per_window
from sources.models import Record, RecordCount, Source, SyncRun
from sources.ratelimit import GENERAL, SEARCH, configured_budgets

# A source whose next sync is this much overdue (or one interval, if shorter) without a run starting is late:
# the dispatcher runs every minute, so such a delay means beat or the workers are not doing their job.
LATE_GRACE = timedelta(minutes=15)
# HubSpot's published limits for OAuth apps (per account): 110 list/read/batch requests per rolling 10 s, and 5
# search requests per second. A run that measured no budget of its own (no limit configured here) is compared
# with these.
HUBSPOT_BUDGET_10S = 110
HUBSPOT_SEARCH_BUDGET_1S = 5
CHART_DAYS = 30
# The dashboard follows work live (polling every 2 s) while anything runs and for LIVE_GRACE after the last run
# ended, so that the deliveries a sync enqueues as it finishes are picked up before the polling stops. The
# "Running now" panel also lists what finished in the last RECENT, with its outcome and counts.
LIVE_GRACE = timedelta(seconds=12)
RECENT = timedelta(minutes=5)
CHART_MAX_RUNS = 120  # beyond this, the charts show the latest runs: a chart of 3,000 bars reads as noise


class Health:
    HEALTHY = "healthy"
    RUNNING = "running"
    LATE = "late"
    FAILING = "failing"
    NEEDS_RECONNECT = "needs_reconnect"
    PAUSED = "paused"

    LABELS = {
        HEALTHY: "Healthy",
        RUNNING: "Running",
        LATE: "Late",
        FAILING: "Failing",
        NEEDS_RECONNECT: "Needs reconnect",
        PAUSED: "Paused",
    }
    BADGE = {HEALTHY: "ok", RUNNING: "info", LATE: "warn", FAILING: "bad", NEEDS_RECONNECT: "bad", PAUSED: ""}


FAILED_STATUSES = ("failed", "partial")
ACTIVE_STATUSES = ("queued", "running")


@dataclass
class SourceRow:
    source: Any
    health: str
    reason: str
    last_run: Any
    active_run: Any
    next_run: datetime | None
    records: int

    @property
    def health_label(self) -> str:
        return Health.LABELS[self.health]

    @property
    def badge(self) -> str:
        return Health.BADGE[self.health]


@dataclass
class MappingRow:
    mapping: Any
    health: str
    reason: str
    last_run: Any
    active_run: Any
    delivered: int
    rejected: int
    pending_since: datetime | None  # HubSpot time of the oldest change not yet delivered
    freshness: timedelta  # its age; zero when everything is delivered

    @property
    def drift_paused(self) -> bool:
        return self.health == Health.PAUSED and getattr(self.mapping, "paused_reason", "") == "drift"

    @property
    def health_label(self) -> str:
        # Switched off on purpose and stopped by a schema change both count as paused, but only the second one
        # needs somebody to act: it must not look like the quiet grey of a mapping that is merely off.
        return "Paused: schema change" if self.drift_paused else Health.LABELS[self.health]

    @property
    def badge(self) -> str:
        return "bad" if self.drift_paused else Health.BADGE[self.health]


@dataclass
class Dashboard:
    sources: list[SourceRow] = field(default_factory=list)
    mappings: list[MappingRow] = field(default_factory=list)
    active_sync_runs: list[Any] = field(default_factory=list)
    active_delivery_runs: list[Any] = field(default_factory=list)
    recent_sync_runs: list[Any] = field(default_factory=list)  # finished within RECENT, latest first
    recent_delivery_runs: list[Any] = field(default_factory=list)
    live: bool = False  # something runs, or ended within LIVE_GRACE: the page keeps following it


# --- health -------------------------------------------------------------------------------------------------


def source_health(source: Any, *, last_run: Any, active_run: Any, now: datetime) -> tuple[str, str]:
    """(state, reason) of one source. Order matters: a disabled source is paused whatever else is true, a
    revoked token must be fixed before anything can run, a running sync is shown as such even after failures."""
    if not source.enabled:
        return Health.PAUSED, "The source is disabled: no syncs are scheduled."
    if source.status == "needs_reconnect":
        return Health.NEEDS_RECONNECT, source.status_detail or "HubSpot refused the token: reconnect the account."
    if active_run is not None:
        return Health.RUNNING, f"A sync is {active_run.status}."
    if last_run is not None and last_run.status in FAILED_STATUSES:
        return Health.FAILING, f"The last sync {'failed' if last_run.status == 'failed' else 'was partial'}."
    if source.next_sync_at is not None:
        grace = min(LATE_GRACE, source.sync_interval or LATE_GRACE)
        if now - source.next_sync_at > grace:
            late_by = now - source.next_sync_at
            return Health.LATE, f"The sync due {_ago(late_by)} has not started."
    return Health.HEALTHY, ""


def mapping_health(
    mapping: Any, *, last_run: Any, active_run: Any, pending_synced_at: datetime | None, now: datetime
) -> tuple[str, str]:
    """(state, reason) of one mapping. A mapping is late when a change reached the mirror more than LATE_GRACE
    ago and no delivery has picked it up."""
    source = mapping.data_model.source
    if not mapping.enabled:
        return Health.PAUSED, "The mapping is off: nothing is delivered."
    if getattr(mapping, "paused_reason", ""):
        return Health.PAUSED, "Paused by schema drift: a property it uses changed in HubSpot. Fix the mapping."
    if source.status == "needs_reconnect":
        return Health.NEEDS_RECONNECT, "Its source needs to be reconnected to HubSpot."
    if active_run is not None:
        return Health.RUNNING, f"A delivery is {active_run.status}."
    if last_run is not None and last_run.status in FAILED_STATUSES:
        return Health.FAILING, f"The last delivery {'failed' if last_run.status == 'failed' else 'was partial'}."
    if pending_synced_at is not None and now - pending_synced_at > LATE_GRACE:
        return Health.LATE, f"Changes mirrored {_ago(now - pending_synced_at)} are not delivered yet."
    return Health.HEALTHY, ""


def _ago(delta: timedelta) -> str:
    return f"{human_duration(delta)} ago"


def human_duration(delta: timedelta | float | None) -> str:
    """1 h 05 min, 3 min 20 s, 12 s, 2 d 4 h."""
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds() if isinstance(delta, timedelta) else delta)
    seconds = max(seconds, 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def run_duration(delta: timedelta | float | None) -> str:
    """How long a run took: "0.04 s", "3.2 s", then like human_duration ("3 min 20 s"). Runs often take well under
    a second, which human_duration would show as "0 s"."""
    if delta is None:
        return "—"
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    if seconds < 1:
        return f"{max(seconds, 0):.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return human_duration(seconds)


# --- the dashboard --------------------------------------------------------------------------------------------


def active_runs(workspace: Workspace) -> tuple[list[Any], list[Any]]:
    """The workspace's queued and running syncs and deliveries: two queries."""

    active_sync = list(
        SyncRun.objects.filter(source__workspace=workspace, status__in=ACTIVE_STATUSES).select_related("source")
    )
    active_delivery = list(
        DeliveryRun.objects.filter(
            mapping__destination__workspace=workspace, status__in=ACTIVE_STATUSES
        ).select_related("mapping__data_model")
    )
    return active_sync, active_delivery


def attach_progress(active_sync: list[Any], active_delivery: list[Any], *, count_total: bool = False) -> None:
    """Set `.progress` on each running sync and delivery. On the page a delivery gets no total (it is a count,
    kept in the cache once made): the live poll, 2 s later, brings it (`count_total`), so the page itself stays
    constant-query."""
    for run in active_sync:
        run.progress = sync_progress(run)
    for run in active_delivery:
        run.progress = delivery_progress(run, count_total=count_total)


def attach_board_progress(board: Dashboard, *, count_total: bool = False) -> None:
    """`.progress` on the running runs and on those that just finished (their final bar: no query)."""
    attach_progress(
        board.active_sync_runs + board.recent_sync_runs,
        board.active_delivery_runs + board.recent_delivery_runs,
        count_total=count_total,
    )


def anything_live(workspace: Workspace, *, now: datetime | None = None) -> bool:
    """Whether a sync or delivery of the workspace is queued or running, or ended within LIVE_GRACE: four small
    queries (the active-run constraints' index, the sources' and mappings' last run), for the idle dashboard's
    watch."""
    since = (now or timezone.now()) - LIVE_GRACE
    return (
        SyncRun.objects.filter(source__workspace=workspace, status__in=ACTIVE_STATUSES).exists()
        or DeliveryRun.objects.filter(mapping__destination__workspace=workspace, status__in=ACTIVE_STATUSES).exists()
        or Source.objects.filter(workspace=workspace, last_run__finished_at__gte=since).exists()
        or Mapping.objects.filter(destination__workspace=workspace, last_run__finished_at__gte=since).exists()
    )


def _recent(runs: list[Any], now: datetime) -> list[Any]:
    """The runs among `runs` that finished within RECENT, latest first."""
    done = [r for r in runs if r is not None and r.finished_at and r.status not in ACTIVE_STATUSES]
    return sorted((r for r in done if now - r.finished_at <= RECENT), key=lambda r: r.finished_at, reverse=True)


def first_pending_change():
    """For annotating a Mapping queryset: the mirror row of its collection with the lowest change_seq past its
    watermark, i.e. the oldest change not delivered yet (change_seq follows the order changes were read). One index
    seek on (source, change_seq) per mapping, inside the mappings query."""

    return Record.objects.filter(
        source_id=OuterRef("data_model__source_id"),
        collection=OuterRef("data_model__collection"),
        change_seq__gt=OuterRef("watermark"),
    ).order_by("change_seq")


def build(workspace: Workspace, *, now: datetime | None = None) -> Dashboard:
    """Every row of the dashboard in a constant number of queries (about eight)."""

    now = now or timezone.now()
    sources = list(Source.objects.filter(workspace=workspace).select_related("last_run"))
    first_pending = first_pending_change()
    mappings = list(
        Mapping.objects.filter(destination__workspace=workspace)
        .select_related("data_model__source", "destination", "profile_space", "last_run")
        .annotate(
            pending_updated_at=Subquery(first_pending.values("updated_at")[:1]),
            pending_synced_at=Subquery(first_pending.values("synced_at")[:1]),
            open_issues=Subquery(
                MappingIssue.objects.filter(mapping=OuterRef("pk"), resolved_at__isnull=True)
                .values("mapping")
                .annotate(n=Count("*"))
                .values("n")[:1]
            ),
        )
    )
    active_sync, active_delivery = active_runs(workspace)
    sync_by_source = {run.source_id: run for run in active_sync}
    delivery_by_mapping = {run.mapping_id: run for run in active_delivery}

    # The big counts from the trigger-kept counter rows (hubsync.counters): a few rows, whatever the mirror's size.
    record_counts = RecordCount.for_sources([s.pk for s in sources])
    state_counts = DeliveryStateCount.for_mappings([m.pk for m in mappings])

    # What ended lately is each source's and mapping's last run, already joined: no query of its own.
    for source in sources:
        if source.last_run is not None:
            source.last_run.source = source
    for mapping in mappings:
        if mapping.last_run is not None:
            mapping.last_run.mapping = mapping
    recent_sync = _recent([s.last_run for s in sources], now)
    recent_delivery = _recent([m.last_run for m in mappings], now)
    board = Dashboard(
        active_sync_runs=active_sync,
        active_delivery_runs=active_delivery,
        recent_sync_runs=recent_sync,
        recent_delivery_runs=recent_delivery,
        live=bool(active_sync or active_delivery)
        or any(now - r.finished_at <= LIVE_GRACE for r in recent_sync + recent_delivery),
    )
    for source in sources:
        last = _finished_or_none(source.last_run)
        active = sync_by_source.get(source.pk)
        health, reason = source_health(source, last_run=last, active_run=active, now=now)
        board.sources.append(
            SourceRow(
                source=source,
                health=health,
                reason=reason,
                last_run=source.last_run,
                active_run=active,
                next_run=source.next_sync_at if source.enabled else None,
                records=record_counts.get(source.pk, 0),
            )
        )
    for mapping in mappings:
        last = _finished_or_none(mapping.last_run)
        active = delivery_by_mapping.get(mapping.pk)
        health, reason = mapping_health(
            mapping, last_run=last, active_run=active, pending_synced_at=mapping.pending_synced_at, now=now
        )
        counts = state_counts.get(mapping.pk, {})
        pending = pending_since(
            mapping.pending_updated_at, mapping.pending_synced_at, connected_at=mapping.data_model.source.created_at
        )
        board.mappings.append(
            MappingRow(
                mapping=mapping,
                health=health,
                reason=reason,
                last_run=mapping.last_run,
                active_run=active,
                delivered=counts.get("delivered", 0),
                rejected=counts.get("rejected", 0),
                pending_since=pending,
                freshness=freshness(pending, now=now),
            )
        )
    return board


def pending_since(
    updated_at: datetime | None, synced_at: datetime | None, *, connected_at: datetime | None
) -> datetime | None:
    """Since when the oldest undelivered change waits: HubSpot's time of the change, but never earlier than the
    source's connection (a record last changed years before hubsync was connected is not years behind: its clock
    starts when hubsync could first have seen it)."""
    since = updated_at or synced_at
    if since is not None and connected_at is not None and since < connected_at:
        return connected_at
    return since


def freshness(pending_since: datetime | None, *, now: datetime) -> timedelta:
    """Age of the oldest HubSpot change not yet delivered; zero when Segment has everything. The oldest change is
    the mirror row with the lowest change_seq past the mapping's watermark: change_seq follows the order changes
    were read, and incremental reads go in HubSpot modification order, so this is one index seek instead of a
    MIN() over every pending row."""
    if pending_since is None:
        return timedelta(0)
    return max(now - pending_since, timedelta(0))


def _finished_or_none(run: Any) -> Any:
    """The parent's last_run may be the active run itself; health looks at the last *finished* outcome."""
    if run is None or run.status in ACTIVE_STATUSES:
        return None
    return run


# --- live progress ----------------------------------------------------------------------------------------------


@dataclass
class Progress:
    done: int
    total: int | None
    percent: int | None
    eta: timedelta | None
    finished: bool
    status: str
    status_label: str
    elapsed: timedelta | None
    budget: BudgetUse | None = None  # sync runs: the rate-limit budget used so far
    partitions: tuple[int, int] | None = None  # sync runs reading in partitions: (done, total)

    @property
    def eta_text(self) -> str:
        return human_duration(self.eta) if self.eta is not None else "estimating…"


def _progress(done: int, total: int | None, *, status: str, label: str, started: Any, finished: Any, now: datetime):
    is_done = status not in ACTIVE_STATUSES
    if total is not None:
        total = max(total, done)
    elif is_done:
        total = done  # an incremental sync that found nothing never learns a total: it was what it read
    percent = None
    if is_done and status == "succeeded":
        percent = 100
    elif total:
        percent = min(100, int(done * 100 / total))
    elapsed = ((finished or now) - started) if started else None
    eta = None
    if not is_done and total and done and elapsed and elapsed.total_seconds() > 0:
        rate = done / elapsed.total_seconds()
        eta = timedelta(seconds=(total - done) / rate)
    return Progress(done, total, percent, eta, is_done, status, label, elapsed)


def sync_progress(run: Any, *, now: datetime | None = None) -> Progress:
    progress = _progress(
        run.progress_done or 0,
        run.progress_total,
        status=run.status,
        label=run.get_status_display(),
        started=run.started_at,
        finished=run.finished_at,
        now=now or timezone.now(),
    )
    progress.budget = budget_use(run)
    progress.partitions = partitions(run.counts)
    return progress


def delivery_progress(run: Any, *, now: datetime | None = None, count_total: bool = True) -> Progress:
    """done = mirror rows considered; total = rows past the run's starting watermark, counted once per run and
    cached (it is fixed by the time the run starts, give or take the changes merged while it runs)."""

    total = None
    if run.status in ACTIVE_STATUSES and run.started_at:
        key = f"hubsync:delivery_total:{run.pk}"
        total = cache.get(key)
        # watermark_from is saved with the first checkpoint (considered > 0); counting before that would count
        # from 0 and cache a wrong total.
        if total is None and count_total and run.considered:
            model = run.mapping.data_model
            total = Record.objects.filter(
                source_id=model.source_id, collection=model.collection, change_seq__gt=run.watermark_from
            ).count()
            cache.set(key, total, 6 * 3600)
    elif run.status not in ACTIVE_STATUSES:
        total = run.considered
    return _progress(
        run.considered or 0,
        total,
        status=run.status,
        label=run.get_status_display(),
        started=run.started_at,
        finished=run.finished_at,
        now=now or timezone.now(),
    )


# --- rate-limit budget ------------------------------------------------------------------------------------------


@dataclass
class BudgetUse:
    """What a sync run asked of the account's rate-limit budget (sources.hubspot.meter), for its page and charts."""

    measured: bool  # False for a run older than the meter: only its total of calls is known
    peak_10s: int
    budget_10s: int
    peak_search_1s: int
    search_budget_1s: int
    rate_limited: int
    in_flight: int

    @staticmethod
    def _share(peak: int, budget: int, rate_limited: int) -> int:
        share = round(100 * peak / budget) if budget else 0
        # HubSpot refuses the request past its budget (a 429): a run that met none stayed inside it, and a
        # reading above 100 % would only be the meter's clock disagreeing with HubSpot's by a few ms.
        return min(share, 100) if rate_limited == 0 else share

    @property
    def percent(self) -> int:
        return self._share(self.peak_10s, self.budget_10s, self.rate_limited)

    @property
    def search_percent(self) -> int:
        return self._share(self.peak_search_1s, self.search_budget_1s, self.rate_limited)

    @property
    def shown_peak_10s(self) -> int:
        return min(self.peak_10s, self.budget_10s) if self.rate_limited == 0 else self.peak_10s

    @property
    def shown_peak_search_1s(self) -> int:
        return min(self.peak_search_1s, self.search_budget_1s) if self.rate_limited == 0 else self.peak_search_1s


def default_budgets() -> tuple[int, int]:
    """The configured budgets per 10 s and per second, or HubSpot's published ones when no limit is set."""
    budgets = configured_budgets()
    general = per_window(budgets[GENERAL], WINDOWS_MS[GENERAL]) or HUBSPOT_BUDGET_10S
    search = per_window(budgets[SEARCH], WINDOWS_MS[SEARCH]) or HUBSPOT_SEARCH_BUDGET_1S
    return general, search


def budget_use(run: Any, defaults: tuple[int, int] | None = None) -> BudgetUse:
    general, search = defaults or default_budgets()
    peak, peak_search = run.peak_requests_10s or 0, run.peak_search_1s or 0
    return BudgetUse(
        measured=bool(peak or peak_search or not run.api_calls),
        peak_10s=peak,
        budget_10s=run.budget_10s or general,
        peak_search_1s=peak_search,
        search_budget_1s=run.search_budget_1s or search,
        rate_limited=run.rate_limited or 0,
        in_flight=(run.requests_in_flight or 0) if run.status in ACTIVE_STATUSES else 0,
    )


def partitions(counts: Any) -> tuple[int, int] | None:
    """(done, total) of a partitioned read, summed over the collections that report one
    (counts[collection]["partitions"] = {"done": n, "total": n}); None when the run is not partitioned."""
    done = total = 0
    if isinstance(counts, dict):
        for c in counts.values():
            part = c.get("partitions") if isinstance(c, dict) else None
            if isinstance(part, dict):
                done += int(part.get("done") or 0)
                total += int(part.get("total") or 0)
    return (done, total) if total else None


# --- charts data ------------------------------------------------------------------------------------------------


@dataclass
class RunPoint:
    run_id: int
    source_id: int
    label: str
    at: datetime
    read: int
    sent: int
    rejected: int
    duration: float | None  # seconds
    api_calls: int
    budget: BudgetUse
    source_name: str = ""


RUN_POINT_FIELDS = (
    "source",
    "source__name",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "counts",
    "api_calls",
    "peak_requests_10s",
    "peak_search_1s",
    "rate_limited",
    "requests_in_flight",
    "budget_10s",
    "search_budget_1s",
)


def chart_runs(workspace: Workspace, *, now: datetime | None = None, source_id: int | None = None) -> list[RunPoint]:
    """Finished sync runs of the last CHART_DAYS days (the latest CHART_MAX_RUNS), oldest first, with the records
    their deliveries sent and rejected. Two queries: runs, then delivery sums grouped by sync run."""

    now = now or timezone.now()
    runs = SyncRun.objects.filter(
        source__workspace=workspace, created_at__gte=now - timedelta(days=CHART_DAYS), started_at__isnull=False
    ).exclude(status__in=ACTIVE_STATUSES)
    if source_id is not None:
        runs = runs.filter(source_id=source_id)
    rows = list(runs.order_by("-created_at").only(*RUN_POINT_FIELDS).select_related("source")[:CHART_MAX_RUNS])
    rows.reverse()
    sums = {
        row["sync_run_id"]: row
        for row in DeliveryRun.objects.filter(sync_run_id__in=[r.pk for r in rows])
        .values("sync_run_id")
        .annotate(sent=Sum("sent"), rejected=Sum("rejected"))
        .order_by()
    }
    points = []
    defaults = default_budgets()
    for run in rows:
        started, finished = run.started_at, run.finished_at
        duration = (finished - started).total_seconds() if started and finished else None
        delivered: abc.Mapping[str, Any] = sums.get(run.pk, {})
        points.append(
            RunPoint(
                run_id=run.pk,
                source_id=run.source_id,
                label=timezone.localtime(started or run.created_at).strftime("%b %d %H:%M"),
                at=started or run.created_at,
                read=total_read(run.counts),
                sent=delivered.get("sent") or 0,
                rejected=delivered.get("rejected") or 0,
                duration=duration,
                api_calls=run.api_calls or 0,
                budget=budget_use(run, defaults),
                source_name=run.source.name,
            )
        )
    return points


def total_read(counts: Any) -> int:
    if not isinstance(counts, dict):
        return 0
    return sum(int(c.get("read") or 0) for c in counts.values() if isinstance(c, dict))


def collection_rows(counts: Any) -> list[dict[str, Any]]:
    """Per-collection counts of a sync run, for its page."""
    rows = []
    if isinstance(counts, dict):
        for name, c in sorted(counts.items()):
            if isinstance(c, dict):
                rows.append(
                    {
                        "collection": name,
                        **{
                            k: c.get(k, 0)
                            for k in ("read", "new", "updated", "unchanged", "archived", "deleted", "merged")
                        },
                        "error": c.get("error", ""),
                        "notes": [n for n in c.get("notes") or [] if isinstance(n, str)],
                    }
                )
    return rows
