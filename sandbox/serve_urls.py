"""URLconf of `manage.py sandbox_serve`: only the sandbox, under the same /sandbox/... prefixes as the product."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("sandbox/", include("sandbox.urls"))]
