"""`manage.py hubsync_apply hubsync.yaml [--workspace W] [--plan] [--allow-delete]`.

Shows the plan (create / change / delete, field by field) and, without --plan, applies it in one transaction
through the same services and checks as the pages. Exit codes, like `terraform plan -detailed-exitcode`:
0 = nothing to change (or applied), 1 = error (invalid file, refused change; nothing changed), 2 = --plan found
changes.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from api.config import COMMAND_LINE, ConfigError, Plan, apply_yaml, find_workspace, plan_yaml
from api.config.document import load

EXIT_ERROR = 1
EXIT_CHANGES = 2


class Command(BaseCommand):
    help = (
        "Show what a hubsync.yaml would change in a workspace and apply it. --plan only shows (exit 2 when there "
        "are changes, 0 when none, 1 on error); deletions are applied only with --allow-delete. Secrets come from "
        "the environment variables the file names."
    )

    # call_command(..., stdin=stream) reads the file from that stream when it is "-" (tests, the API's callers).
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the YAML file (- for stdin)")
        parser.add_argument("--workspace", help="workspace id or name (default: the file's `workspace`)")
        parser.add_argument("--plan", action="store_true", help="show the plan only; exit 2 when there are changes")
        parser.add_argument(
            "--allow-delete", action="store_true", help="also delete what the workspace has and the file does not"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            code = self._run(options)
        except ConfigError as exc:
            if exc.plan is not None:
                self.stdout.write(exc.plan.render(), ending="")
            self.stderr.write("Nothing was changed:\n" + "\n".join(f"  {e}" for e in exc.errors))
            code = EXIT_ERROR
        if code:
            sys.exit(code)

    def _run(self, options: dict[str, Any]) -> int:
        text = self._read(options["file"], options.get("stdin") or sys.stdin)
        name = options.get("workspace") or load(text).get("workspace")
        if not name:
            raise ConfigError("--workspace: give the workspace (the file names none)")
        workspace = find_workspace(str(name))
        if options["plan"]:
            plan = plan_yaml(workspace=workspace, text=text)
            self.stdout.write(plan.render(), ending="")
            if plan.problems:
                return EXIT_ERROR
            return EXIT_CHANGES if plan.has_changes else 0
        plan = apply_yaml(
            workspace=workspace, text=text, actor=COMMAND_LINE, allow_delete=options["allow_delete"], via="command line"
        )
        self.stdout.write(plan.render(), ending="")
        self.stdout.write(self._outcome(plan) + "\n")
        return 0

    def _read(self, path: str, stdin: Any) -> str:
        try:
            if path == "-":
                return stdin.read()
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a UTF-8 text file") from None

    @staticmethod
    def _outcome(plan: Plan) -> str:
        if not plan.has_changes:
            return "Nothing to apply."
        skipped = sum(1 for c in plan.changes if c.applied is False)
        done = "Applied."
        if skipped:
            done += f" {skipped} deletion(s) not applied: run again with --allow-delete to delete them."
        return done
