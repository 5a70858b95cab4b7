from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("hubspot/", include("sandbox.hubspot.urls")),
    path("segment/", include("sandbox.segment.urls")),
]
