from __future__ import annotations

from django.urls import path

from . import drift_views

app_name = "mappings"
urlpatterns: list = [
    path("mappings/<int:mapping_id>/drift/", drift_views.mapping_drift, name="drift"),
    path("mappings/issues/<int:issue_id>/fix/", drift_views.issue_fix, name="issue_fix"),
]

# Rejected records (list + retry) and sample mode: the debugger work, kept in their own view modules.
from . import views_rejected, views_sample  # noqa: E402

urlpatterns += [
    path("mappings/<int:mapping_id>/rejected/", views_rejected.rejected_list, name="rejected"),
    path("mappings/<int:mapping_id>/rejected/retry/", views_rejected.rejected_retry, name="rejected_retry"),
    path("mappings/<int:mapping_id>/sample/", views_sample.sample_mode, name="sample_mode"),
]
