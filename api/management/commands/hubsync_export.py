"""`manage.py hubsync_export --workspace W > hubsync.yaml`: the workspace's configuration as code (no secrets)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.config import ConfigError, export_yaml, find_workspace


class Command(BaseCommand):
    help = (
        "Write a workspace's sources, data models, destinations, profile spaces, mappings and alert settings as "
        "YAML (to stdout, or --output FILE). Tokens and write keys are never written: the file names the "
        "environment variables that hold them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace id or name")
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workspace = find_workspace(options["workspace"])
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        text = export_yaml(workspace=workspace)
        if options.get("output"):
            with open(options["output"], "w", encoding="utf-8") as out:
                out.write(text)
        else:
            self.stdout.write(text, ending="")
