"""Change a sandbox portal's data the way users change HubSpot.

python manage.py sandbox_mutate --portal 1001 --collection contacts --create 10 --update 50 --archive 5
python manage.py sandbox_mutate --portal 1001 --collection contacts --create 12000 --same-timestamp   # bulk import
python manage.py sandbox_mutate --portal 1001 --collection contacts --purge 3            # GDPR deletes
python manage.py sandbox_mutate --portal 1001 --collection contacts --purge-archived 2   # 90-day recycle bin
python manage.py sandbox_mutate --portal 1001 --collection contacts --purge-id 51 --purge-id 107
python manage.py sandbox_mutate --portal 1001 --collection deals --add-property renewal_risk --type enumeration
python manage.py sandbox_mutate --portal 1001 --collection deals --delete-property renewal_risk
python manage.py sandbox_mutate --portal 1001 --collection contacts --add-properties 300
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sandbox.hubspot.mutate import (
    PROPERTY_TYPES,
    MutationError,
    add_many_properties,
    add_property,
    delete_property,
    mutate,
    purge_records,
    restore_records,
)
from sandbox.hubspot.portals import get_portal
from sandbox.hubspot.webhooks import flush


class Command(BaseCommand):
    help = "Create / update / archive / permanently delete sandbox HubSpot records, or add / delete custom properties."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--portal", type=int, required=True)
        parser.add_argument("--collection", required=True, help="contacts, companies, deals or tickets")
        parser.add_argument("--create", type=int, default=0)
        parser.add_argument("--update", type=int, default=0)
        parser.add_argument("--archive", type=int, default=0)
        parser.add_argument(
            "--purge",
            type=int,
            default=0,
            metavar="N",
            help="permanently delete N live records (HubSpot's GDPR delete / permanent delete)",
        )
        parser.add_argument(
            "--purge-archived",
            type=int,
            default=0,
            metavar="N",
            help="permanently delete N archived records (HubSpot's recycle bin after 90 days)",
        )
        parser.add_argument(
            "--purge-id",
            type=int,
            action="append",
            default=[],
            metavar="ID",
            help="permanently delete this record (live or archived); repeatable",
        )
        parser.add_argument(
            "--restore-id", type=int, action="append", default=[], metavar="ID", help="restore this archived record"
        )
        parser.add_argument(
            "--same-timestamp", action="store_true", help="give every change of this run one timestamp (a bulk import)"
        )
        parser.add_argument("--seed", type=int, default=None, help="make the choice of records reproducible")
        parser.add_argument("--add-property", metavar="NAME")
        parser.add_argument("--delete-property", metavar="NAME")
        parser.add_argument(
            "--add-properties",
            type=int,
            default=0,
            metavar="N",
            help="add N custom properties at once (hundreds make a full GET URL exceed 8,000 chars)",
        )
        parser.add_argument("--type", default="string", choices=sorted(PROPERTY_TYPES))
        parser.add_argument("--label", default="")
        parser.add_argument("--options", default="", help="comma-separated option values for enumerations")

    def handle(self, *args: Any, **opts: Any) -> None:
        portal = get_portal(opts["portal"])
        if portal is None:
            raise CommandError(f"no sandbox portal {opts['portal']} (create it with sandbox_seed)")
        try:
            if opts["add_property"]:
                options = [{"label": v.strip(), "value": v.strip()} for v in opts["options"].split(",") if v.strip()]
                prop = add_property(
                    portal=portal,
                    collection=opts["collection"],
                    name=opts["add_property"],
                    label=opts["label"],
                    type=opts["type"],
                    options=options,
                )
                self.stdout.write(f"added property {prop.name} ({prop.type}) to {prop.object_type}")
            if opts["add_properties"]:
                names = add_many_properties(portal=portal, collection=opts["collection"], count=opts["add_properties"])
                self.stdout.write(f"added {len(names)} properties to {opts['collection']}")
            if opts["delete_property"]:
                delete_property(portal=portal, collection=opts["collection"], name=opts["delete_property"])
                self.stdout.write(f"deleted property {opts['delete_property']}")
            if opts["create"] or opts["update"] or opts["archive"] or opts["purge"] or opts["purge_archived"]:
                result = mutate(
                    portal=portal,
                    collection=opts["collection"],
                    create=opts["create"],
                    update=opts["update"],
                    archive=opts["archive"],
                    purge=opts["purge"],
                    purge_archived=opts["purge_archived"],
                    same_timestamp=opts["same_timestamp"],
                    seed=opts["seed"],
                )
                self.stdout.write(
                    f"{opts['collection']} in portal {portal.hub_id}: created {len(result.created)}, "
                    f"updated {len(result.updated)}, archived {len(result.archived)}, "
                    f"permanently deleted {len(result.purged)}"
                    + (f" (all at {result.as_dict()['timestamp']})" if opts["same_timestamp"] else "")
                )
                if result.purged:
                    self.stdout.write(f"permanently deleted ids: {', '.join(result.purged)}")
            if opts["purge_id"]:
                gone = purge_records(portal=portal, collection=opts["collection"], ids=opts["purge_id"])
                missing = sorted(set(opts["purge_id"]) - set(gone))
                self.stdout.write(
                    f"permanently deleted {len(gone)} {opts['collection']}"
                    + (f"; no such record (or deleted already): {', '.join(map(str, missing))}" if missing else "")
                )
            if opts["restore_id"]:
                back = restore_records(portal=portal, collection=opts["collection"], ids=opts["restore_id"])
                self.stdout.write(f"restored {len(back)} {opts['collection']}")
        except MutationError as exc:
            raise CommandError(str(exc)) from exc
        # This process ends now: the webhooks of these changes (if the portal sends any) go out before it does;
        # what cannot be delivered stays in the outbox for the web process's sender to retry.
        batches = flush()
        if batches:
            self.stdout.write(f"sent {batches} webhook request(s)")
