"""`python manage.py sync SOURCE_ID [--full]`: one sync in the foreground (no broker), with progress lines, then
the deliveries of the source's enabled mappings, also in the foreground, with their counts."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from sources.models import Source, SyncRun
from sources.runs import create_run

from ...delivery import deliver_collections, sync_in_foreground
from ...models import DeliveryRun


class Command(BaseCommand):
    help = "Run one sync of a source in the foreground and print its progress."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source_id", type=int)
        parser.add_argument("--full", action="store_true", help="re-read everything (resets the cursors)")

    def handle(self, *args, source_id: int, full: bool, **options) -> None:
        try:
            source = Source.objects.get(pk=source_id)
        except Source.DoesNotExist as exc:
            raise CommandError(f"no source with id {source_id}") from exc
        if full:
            trigger = SyncRun.Trigger.FULL
        elif source.first_synced_at is None:
            trigger = SyncRun.Trigger.FIRST
        else:
            trigger = SyncRun.Trigger.MANUAL
        run = create_run(source=source, trigger=trigger)
        if run is None:
            active = source.runs.filter(status__in=SyncRun.ACTIVE).first()
            raise CommandError(f"source {source_id} already has an active run ({active}); try again when it ends")
        self.stdout.write(f"run {run.pk} ({trigger}) of {source} started")
        # The engine enqueues no deliveries here: we deliver after the run, so the command needs no broker or worker.
        finished, changed = sync_in_foreground(run_id=run.pk, progress=lambda line: self.stdout.write(line))
        if finished is None:
            raise CommandError(f"run {run.pk} was taken over by another worker")
        self.stdout.write(
            f"run {finished.pk}: {finished.status}; {finished.progress_done} records read, "
            f"{finished.api_calls} API calls, {finished.retries} retries"
        )
        for collection, counts in sorted(finished.counts.items()):
            self.stdout.write(f"  {collection}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v != ""))
        failed_deliveries = self.deliver(source, finished, changed)
        if finished.status == SyncRun.Status.FAILED:
            raise CommandError(finished.error or "the run failed")
        if failed_deliveries:
            raise CommandError(f"{failed_deliveries} delivery(ies) did not complete; the next run resends the rest")

    def deliver(self, source: Source, run: SyncRun, changed: set[str]) -> int:
        """Deliver every enabled mapping on a changed (or behind) collection. Returns how many did not succeed."""
        if not changed:
            self.stdout.write("deliveries: nothing changed, nothing to deliver")
            return 0
        self.stdout.write(f"delivering {', '.join(sorted(changed))} ...")
        results = deliver_collections(source=source, collections=changed, sync_run_id=run.pk)
        if not results:
            self.stdout.write("deliveries: no enabled mapping on these collections")
        failed = 0
        for mapping, delivery in results:
            if delivery is None:
                self.stdout.write(
                    f"  mapping {mapping.pk}: skipped (nothing to deliver, disabled, or another delivery is running)"
                )
                continue
            self.stdout.write(
                f"  mapping {mapping.pk} ({mapping.data_model.collection}): {delivery.status}; "
                f"considered {delivery.considered}, sent {delivery.sent}"
                + (f" ({delivery.archived_sent} of them archived, marked as such)" if delivery.archived_sent else "")
                + f", unchanged {delivery.unchanged}, "
                f"rejected {delivery.rejected}, failed {delivery.failed}, archived {delivery.archived}; "
                f"{delivery.batches} batches, {delivery.requests} requests"
                + (f"; {delivery.error}" if delivery.error else "")
            )
            if delivery.status != DeliveryRun.Status.SUCCEEDED:
                failed += 1
        return failed
