from __future__ import annotations

from django.urls import path

from . import alert_views, runs, views, views_debugger

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("settings/alerts/", alert_views.alerts_page, name="alerts"),
    path("settings/alerts/log/", alert_views.alerts_log, name="alerts_log"),
    path("settings/alerts/<int:alertchannel_id>/test/", alert_views.alert_channel_test, name="alert_channel_test"),
    path(
        "settings/alerts/<int:alertchannel_id>/toggle/", alert_views.alert_channel_toggle, name="alert_channel_toggle"
    ),
    path(
        "settings/alerts/<int:alertchannel_id>/delete/", alert_views.alert_channel_delete, name="alert_channel_delete"
    ),
    path("debug/records/", views_debugger.record_debugger, name="record_debugger"),
    # Dashboard fragments and run pages (monitoring.runs).
    path("dashboard/workers/", runs.dashboard_workers, name="dashboard_workers"),
    path("dashboard/live/", runs.dashboard_live, name="dashboard_live"),
    path("dashboard/watch/", runs.dashboard_watch, name="dashboard_watch"),
    path("sources/<int:source_id>/runs/<int:sync_run_id>/", runs.sync_run_detail, name="sync_run"),
    path("sources/<int:source_id>/runs/<int:sync_run_id>/progress/", runs.sync_run_progress, name="sync_run_progress"),
    path("deliveries/<int:delivery_run_id>/", runs.delivery_run_detail, name="delivery_run"),
    path("deliveries/<int:delivery_run_id>/progress/", runs.delivery_run_progress, name="delivery_run_progress"),
]
