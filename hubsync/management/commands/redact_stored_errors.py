"""Cut credentials out of errors stored before errors were redacted on the way into the database.

New errors are redacted when stored (`RedactedTextField`, hubsync/redact.py); rows written by an older release
may still quote an `Authorization` header or a token that HubSpot or Segment echoed. Run once after upgrading:
every RedactedTextField of every model (found through the app registry) and the per-collection errors inside
SyncRun.counts. Only rows whose text changes are written; a second run changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import models

from hubsync import fields
from hubsync.redact import redact


def redacted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """(model, [field names]) for every concrete model that has RedactedTextFields."""
    return fields.models_with(fields.RedactedTextField)


def _clean_counts(counts: Any) -> Any:
    if not isinstance(counts, dict):
        return counts
    return {
        k: {**v, "error": redact(v["error"])} if isinstance(v, dict) and isinstance(v.get("error"), str) else v
        for k, v in counts.items()
    }


class Command(BaseCommand):
    help = "Redact credentials in error texts stored by earlier releases (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        total = 0
        for model, names in redacted_fields():
            changed = 0
            for row in model._default_manager.only("pk", *names).iterator(chunk_size=1000):
                updates = {n: redact(getattr(row, n)) for n in names if getattr(row, n)}
                updates = {n: v for n, v in updates.items() if v != getattr(row, n)}
                if updates:
                    changed += 1
                    if not dry_run:
                        model._default_manager.filter(pk=row.pk).update(**updates)
            if changed:
                self.stdout.write(f"{model._meta.label}: {changed} rows")
            total += changed
        sync_run = apps.get_model("sources", "SyncRun") if apps.is_installed("sources") else None
        if sync_run is not None:
            changed = 0
            for pk, counts in sync_run.objects.values_list("pk", "counts").iterator(chunk_size=1000):
                cleaned = _clean_counts(counts)
                if cleaned != counts:
                    changed += 1
                    if not dry_run:
                        sync_run.objects.filter(pk=pk).update(counts=cleaned)
            if changed:
                self.stdout.write(f"{sync_run._meta.label}.counts: {changed} rows")
            total += changed
        self.stdout.write(f"{'would redact' if dry_run else 'redacted'} {total} rows")
