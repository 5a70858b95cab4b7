from __future__ import annotations

from django.urls import path

from .views import detail, hooks, wizard

app_name = "sources"
urlpatterns = [
    path("sources/", wizard.source_list, name="list"),
    path("sources/catalog/", wizard.catalog, name="catalog"),
    path("sources/new/", wizard.wizard_name, name="new"),
    path("sources/new/connect/", wizard.wizard_connect, name="wizard_connect"),
    path("sources/new/duplicate/", wizard.wizard_duplicate, name="wizard_duplicate"),
    path("sources/new/schema/", wizard.wizard_schema, name="wizard_schema"),
    path("sources/new/sync/", wizard.wizard_sync, name="wizard_sync"),
    path("sources/new/cancel/", wizard.wizard_cancel, name="wizard_cancel"),
    path("sources/oauth/start/", wizard.oauth_start, name="oauth_start"),
    path("sources/oauth/callback/", wizard.oauth_callback, name="oauth_callback"),
    path("sources/<int:pk>/", detail.source_detail, name="detail"),
    path("sources/<int:pk>/runs/", detail.source_runs, name="runs"),
    path("sources/<int:pk>/models/", detail.source_models, name="models"),
    path("sources/<int:pk>/settings/", detail.source_settings, name="settings"),
    path("sources/<int:pk>/enable/", detail.source_enable, name="enable"),
    path("sources/<int:pk>/sync/", detail.source_sync, name="sync"),
    path("sources/<int:pk>/full-sync/", detail.source_full_sync, name="full_sync"),
    path("sources/<int:pk>/reconnect/", detail.source_reconnect, name="reconnect"),
    path("sources/<int:pk>/delete/", detail.source_delete, name="delete"),
    path("sources/<int:pk>/live/", detail.source_live, name="live"),
    # HubSpot's webhook target URL (stable: registered in the HubSpot app); with and without the slash, since a
    # redirect would lose the POST.
    path("hooks/hubspot/", hooks.hubspot_webhook, name="hubspot_webhook"),
    path("hooks/hubspot", hooks.hubspot_webhook),
]
