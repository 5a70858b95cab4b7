"""Re-encrypt every stored secret under the newest key of HUBSYNC_ENCRYPTION_KEYS.

Key rotation: put the new key first (`HUBSYNC_ENCRYPTION_KEYS=new,old`), restart every process, run this
command, then drop the old key. Every model's EncryptedTextField is found through the app registry, so secrets
added later by any app are rotated without touching this file. Values already under the newest key are left
alone, so a second run changes nothing (and an interrupted run can simply be started again).
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.db.models.functions import Cast

from hubsync import fields


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """(model, [field names]) for every concrete model that has EncryptedTextFields."""
    return fields.models_with(fields.EncryptedTextField)


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field of every model under the newest HUBSYNC_ENCRYPTION_KEYS key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
        parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")

    def handle(self, *args: Any, batch_size: int, dry_run: bool, **options: Any) -> None:
        keys = list(settings.HUBSYNC_ENCRYPTION_KEYS)
        if not keys:
            raise CommandError("HUBSYNC_ENCRYPTION_KEYS is empty")
        newest = Fernet(keys[0].encode())
        totals = {"rotated": 0, "current": 0, "empty": 0, "failed": 0}
        failures: list[str] = []
        for model, names in encrypted_fields():
            for name in names:
                counts = self._rotate_field(model, name, newest, batch_size, dry_run, failures)
                for key, value in counts.items():
                    totals[key] += value
                self.stdout.write(
                    f"{model._meta.label}.{name}: {counts['rotated']} {'to rotate' if dry_run else 'rotated'}, "
                    f"{counts['current']} already current, {counts['empty']} empty, {counts['failed']} failed"
                )
        self.stdout.write(
            f"total: {totals['rotated']} {'to rotate' if dry_run else 'rotated'}, {totals['current']} already "
            f"current, {totals['empty']} empty, {totals['failed']} failed"
        )
        if failures:
            # Name the rows, never the values: an operator can then fix the keys and run again.
            raise CommandError(
                "no configured key decrypts these secrets (add the key they were written with to "
                "HUBSYNC_ENCRYPTION_KEYS): " + ", ".join(failures[:50]) + (" ..." if len(failures) > 50 else "")
            )

    def _rotate_field(
        self,
        model: type[models.Model],
        name: str,
        newest: Fernet,
        batch_size: int,
        dry_run: bool,
        failures: list[str],
    ) -> dict[str, int]:
        counts = {"rotated": 0, "current": 0, "empty": 0, "failed": 0}
        pk_name = model._meta.pk.name
        last_pk: Any = None
        while True:
            # One transaction per batch with the rows locked, so a concurrent save of a new token is neither
            # lost nor overwritten by its stale ciphertext.
            with transaction.atomic():
                qs = model._base_manager.select_for_update().order_by(pk_name)
                if last_pk is not None:
                    qs = qs.filter(pk__gt=last_pk)
                # Cast to a plain TextField reads the stored ciphertext without decrypting it.
                rows = list(qs.annotate(_raw=Cast(name, models.TextField())).values_list(pk_name, "_raw")[:batch_size])
                for pk, raw in rows:
                    if not raw:
                        counts["empty"] += 1
                        continue
                    try:
                        newest.decrypt(raw[len(fields.PREFIX) :].encode())
                    except (InvalidToken, ValueError):
                        pass
                    else:
                        if raw.startswith(fields.PREFIX):
                            counts["current"] += 1
                            continue
                    try:
                        rotated = fields.rotate(raw)
                    except fields.DecryptionError:
                        counts["failed"] += 1
                        failures.append(f"{model._meta.label}.{name} pk={pk}")
                        continue
                    counts["rotated"] += 1
                    if not dry_run:
                        # A Value with a plain TextField is written as is (the field would encrypt it again).
                        model._base_manager.filter(pk=pk).update(
                            **{name: models.Value(rotated, output_field=models.TextField())}
                        )
            if len(rows) < batch_size:
                return counts
            last_pk = rows[-1][0]
