"""Configuration as code: a workspace's sources, data models, destinations, profile spaces, mappings and alert
settings as one YAML file (`export_yaml`), and the plan / apply of such a file (`plan_yaml`, `apply_yaml`).
The commands `hubsync_export` and `hubsync_apply` and the REST API call these."""

from __future__ import annotations

from .apply import COMMAND_LINE, apply_yaml, plan_yaml
from .document import ConfigError
from .export import export_yaml, find_workspace
from .plan import Change, Plan

__all__ = ["COMMAND_LINE", "Change", "ConfigError", "Plan", "apply_yaml", "export_yaml", "find_workspace", "plan_yaml"]
