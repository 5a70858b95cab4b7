"""The OpenAPI document and its docs page (Swagger UI from drf-spectacular-sidecar's pinned files, no CDN)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

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
