"""`python manage.py sync SOURCE_ID [--full]`: one sync in the foreground (no broker), with progress lines."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from sources.extract import execute_run
from sources.models import Source, SyncRun
from sources.runs import create_run


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
        finished = execute_run(run_id=run.pk, progress=lambda line: self.stdout.write(line))
        if finished is None:
            raise CommandError(f"run {run.pk} was taken over by another worker")
        self.stdout.write(
            f"run {finished.pk}: {finished.status}; {finished.progress_done} records read, "
            f"{finished.api_calls} API calls, {finished.retries} retries"
        )
        for collection, counts in sorted(finished.counts.items()):
            self.stdout.write(f"  {collection}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v != ""))
        if finished.status == SyncRun.Status.FAILED:
            raise CommandError(finished.error or "the run failed")
