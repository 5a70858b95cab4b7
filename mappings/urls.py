from __future__ import annotations

from django.urls import path

from . import drift_views

app_name = "mappings"
urlpatterns: list = [
    path("mappings/<int:mapping_id>/drift/", drift_views.mapping_drift, name="drift"),
    path("mappings/issues/<int:issue_id>/fix/", drift_views.issue_fix, name="issue_fix"),
]
