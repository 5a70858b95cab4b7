"""The OpenAPI document and its docs page (Swagger UI from drf-spectacular-sidecar's pinned files, no CDN)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsync.access import public_view


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.BearerTokenAuthentication"
    name = "workspaceToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A workspace API token (Settings → API tokens), e.g. `Authorization: Bearer hs_…`.",
        }


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 document of /api/v1/: public, as it describes the API and holds no workspace's data."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    public = True


class DocsView(SpectacularSwaggerSplitView):
    """Swagger UI; its start-up script is a separate request (the CSP allows no inline script or style)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    template_name = "api/swagger_ui.html"
    public = True


schema_view = public_view(SchemaView.as_view())
docs_view = public_view(DocsView.as_view(url_name="api:schema"))


PROBLEM = {
    "type": "object",
    "description": "A problem document (RFC 9457), sent as application/problem+json.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI reference naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "errors": {
            "type": "object",
            "description": "Invalid input: messages per field (`non_field_errors` for the request as a whole).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "additionalProperties": True,
}
PROBLEMS = {
    "400": "Invalid input (`errors` per field).",
    "401": "No token, or an invalid, expired or revoked one.",
    "403": "The token's role does not allow this.",
    "404": "No such object in this workspace (other workspaces' ids are not found either).",
    "409": "The current state refuses it (setup incomplete, object in use, run already active).",
    "429": "Too many requests with this token; retry after `Retry-After` seconds.",
}


def add_problem_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Every operation's error answers, as problem documents (drf-spectacular postprocessing hook)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if operation.get("security") == [{}] or "security" not in operation:
                continue  # public: no token, no workspace
            responses = operation.setdefault("responses", {})
            wanted = {"400", "401", "404", "429"} | ({"403"} if method != "get" else set())
            wanted |= {code for code in responses if code in PROBLEMS}
            for code in sorted(wanted):
                responses[code] = {"description": PROBLEMS[code], "content": content}
    return result


class RootSerializer(serializers.Serializer):
    workspaces = serializers.CharField()
    schema = serializers.CharField()
    docs = serializers.CharField()


class ApiRoot(APIView):
    """Where to start: the workspaces of a token, the OpenAPI document and the docs page."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    public = True

    @extend_schema(responses=RootSerializer, auth=[], tags=["meta"], operation_id="root")
    def get(self, request: Request) -> Response:
        return Response(
            {
                "workspaces": request.build_absolute_uri(reverse("api:workspaces")),
                "schema": request.build_absolute_uri(reverse("api:schema")),
                "docs": request.build_absolute_uri(reverse("api:docs")),
            }
        )


root_view = public_view(ApiRoot.as_view())
