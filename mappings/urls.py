from __future__ import annotations

from django.urls import path

from . import drift_views, views, views_destinations

app_name = "mappings"
urlpatterns = [
    path("mappings/<int:mapping_id>/drift/", drift_views.mapping_drift, name="drift"),
    path("mappings/issues/<int:issue_id>/fix/", drift_views.issue_fix, name="issue_fix"),
    path("destinations/", views_destinations.destination_list, name="destinations"),
    path("destinations/new/", views_destinations.destination_new, name="destination_new"),
    path("destinations/<int:destination_id>/", views_destinations.destination_detail, name="destination"),
    path(
        "destinations/<int:destination_id>/settings/",
        views_destinations.destination_settings,
        name="destination_settings",
    ),
    path("destinations/<int:destination_id>/delete/", views_destinations.destination_delete, name="destination_delete"),
    path(
        "destinations/<int:destination_id>/spaces/new/", views_destinations.profile_space_new, name="profile_space_new"
    ),
    path("spaces/<int:profile_space_id>/", views_destinations.profile_space_edit, name="profile_space"),
    path("spaces/<int:profile_space_id>/check/", views_destinations.profile_space_check, name="profile_space_check"),
    path("spaces/<int:profile_space_id>/delete/", views_destinations.profile_space_delete, name="profile_space_delete"),
    path("mappings/", views.mapping_list, name="list"),
    path("mappings/new/", views.mapping_new, name="mapping_new"),
    path("mappings/<int:mapping_id>/", views.mapping_detail, name="mapping_detail"),
    path("mappings/<int:mapping_id>/edit/", views.mapping_edit, name="mapping_edit"),
    path("mappings/<int:mapping_id>/status/", views.mapping_toggle, name="mapping_toggle"),
    path("mappings/<int:mapping_id>/resync/", views.mapping_resync, name="mapping_resync"),
    path("mappings/<int:mapping_id>/test/send/", views.mapping_test_send, name="mapping_test_send"),
    path("mappings/<int:mapping_id>/delete/", views.mapping_delete, name="mapping_delete"),
]

# Rejected records (list + retry) and sample mode: the debugger work, kept in their own view modules.
from . import views_rejected, views_sample  # noqa: E402

urlpatterns += [
    path("mappings/<int:mapping_id>/rejected/", views_rejected.rejected_list, name="rejected"),
    path("mappings/<int:mapping_id>/rejected/retry/", views_rejected.rejected_retry, name="rejected_retry"),
    path("mappings/<int:mapping_id>/sample/", views_sample.sample_mode, name="sample_mode"),
]
