from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from . import views

# The Django admin logs in through allauth (rate limits, MFA) instead of its own unprotected form.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]  # a wrapped bound method

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("workspaces/new/", views.workspace_new, name="workspace_new"),
    path("workspaces/switch/", views.workspace_switch, name="workspace_switch"),
    path("settings/", views.workspace_settings, name="workspace_settings"),
    path("members/", views.members, name="members"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("members/invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("audit/", views.audit_log, name="audit_log"),
    path("", include("monitoring.urls")),
    path("api/v1/", include("api.urls")),
    path("", include("api.urls_pages")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("", include("sources.urls")),
    path("", include("models_app.urls")),
    path("", include("mappings.urls")),
]

if settings.SANDBOX:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
