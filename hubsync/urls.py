from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from . import alert_views, runs, views, views_debugger

# The Django admin logs in through allauth (rate limits, MFA) instead of its own unprotected form.
admin.site.login = secure_admin_login(admin.site.login)

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("workspaces/new/", views.workspace_new, name="workspace_new"),
    path("workspaces/switch/", views.workspace_switch, name="workspace_switch"),
    path("settings/", views.workspace_settings, name="workspace_settings"),
    path("settings/alerts/", alert_views.alerts_page, name="alerts"),
    path("settings/alerts/log/", alert_views.alerts_log, name="alerts_log"),
    path("settings/alerts/<int:alertchannel_id>/test/", alert_views.alert_channel_test, name="alert_channel_test"),
    path(
        "settings/alerts/<int:alertchannel_id>/toggle/", alert_views.alert_channel_toggle, name="alert_channel_toggle"
    ),
    path(
        "settings/alerts/<int:alertchannel_id>/delete/", alert_views.alert_channel_delete, name="alert_channel_delete"
    ),
    path("members/", views.members, name="members"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("members/invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("audit/", views.audit_log, name="audit_log"),
    path("debug/records/", views_debugger.record_debugger, name="record_debugger"),
    # Dashboard fragments and run pages (hubsync.runs).
    path("dashboard/workers/", runs.dashboard_workers, name="dashboard_workers"),
    path("dashboard/running/", runs.dashboard_running, name="dashboard_running"),
    path("sources/<int:source_id>/runs/<int:sync_run_id>/", runs.sync_run_detail, name="sync_run"),
    path("sources/<int:source_id>/runs/<int:sync_run_id>/progress/", runs.sync_run_progress, name="sync_run_progress"),
    path("deliveries/<int:delivery_run_id>/", runs.delivery_run_detail, name="delivery_run"),
    path("deliveries/<int:delivery_run_id>/progress/", runs.delivery_run_progress, name="delivery_run_progress"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("", include("sources.urls")),
    path("", include("models_app.urls")),
    path("", include("mappings.urls")),
]

if settings.SANDBOX:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
