"""The configuration as code through the API: the workspace's YAML (export), the plan of a YAML file, and its
apply. The same functions as `manage.py hubsync_export` / `hubsync_apply` (api.config), so the same rules."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..config import ConfigError, apply_yaml, export_yaml, plan_yaml
from .base import ApiView, actor, parse, workspace

YAML = "application/yaml"


class ConfigInputSerializer(serializers.Serializer):
    yaml = serializers.CharField(
        trim_whitespace=False, help_text="The configuration file, as hubsync_export writes it."
    )
    allow_delete = serializers.BooleanField(
        default=False, help_text="Apply the deletions the plan lists (otherwise they are listed as not applied)."
    )


class ConfigPlanSerializer(serializers.Serializer):
    workspace = serializers.CharField()
    changes = serializers.ListField(
        child=serializers.DictField(),
        help_text=(
            "One item per change: `op` (create | change | delete), `path` (the place in the file), `old` and `new` "
            "for a change, `fields` for a create, `applied` once applied (false: a deletion without allow_delete)."
        ),
    )
    problems = serializers.ListField(child=serializers.CharField())
    summary = serializers.DictField(child=serializers.IntegerField())
    applied = serializers.BooleanField(allow_null=True)
    text = serializers.CharField(help_text="The plan as hubsync_apply --plan prints it.")


def _refused(exc: ConfigError) -> exceptions.ValidationError:
    """An invalid file, or a change the workspace refuses: a 400 problem whose `errors.yaml` name the place in the
    file and the reason (nothing was changed)."""
    return exceptions.ValidationError({"yaml": exc.errors})


def _plan_body(plan: Any) -> dict[str, Any]:
    return {**plan.to_dict(), "text": plan.render()}


class ConfigExport(ApiView):
    """The workspace's configuration as YAML (no secrets: write keys and webhook URLs are named environment
    variables), byte-stable for the same configuration."""

    @extend_schema(responses={(200, YAML): OpenApiTypes.STR})
    def get(self, request: Request, workspace_id: int) -> HttpResponse:
        return HttpResponse(export_yaml(workspace=workspace(request)), content_type=f"{YAML}; charset=utf-8")


class ConfigPlan(ApiView):
    """What applying a YAML file would change, field by field, and what the workspace would refuse. Changes
    nothing."""

    @extend_schema(request=ConfigInputSerializer, responses=ConfigPlanSerializer)
    def post(self, request: Request, workspace_id: int) -> Response:
        data = parse(ConfigInputSerializer, request)
        try:
            plan = plan_yaml(workspace=workspace(request), text=data["yaml"])
        except ConfigError as exc:
            raise _refused(exc) from exc
        return Response(_plan_body(plan))


class ConfigApply(ApiView):
    """Apply a YAML file in one transaction, idempotently: applying a workspace's own export changes nothing.
    Deletions only with `allow_delete`. A refusal changes nothing and answers 400 with the reasons."""

    @extend_schema(request=ConfigInputSerializer, responses=ConfigPlanSerializer)
    def post(self, request: Request, workspace_id: int) -> Response:
        data = parse(ConfigInputSerializer, request)
        try:
            plan = apply_yaml(
                workspace=workspace(request),
                text=data["yaml"],
                actor=actor(request),
                allow_delete=data["allow_delete"],
                via="api",
            )
        except ConfigError as exc:
            raise _refused(exc) from exc
        return Response(_plan_body(plan))
