from __future__ import annotations

from django.urls import path

from . import views

app_name = "sources"
urlpatterns = [
    path("sources/", views.source_list, name="list"),
    path("sources/catalog/", views.catalog, name="catalog"),
    path("sources/new/", views.wizard_name, name="new"),
    path("sources/new/connect/", views.wizard_connect, name="wizard_connect"),
    path("sources/new/duplicate/", views.wizard_duplicate, name="wizard_duplicate"),
    path("sources/new/schema/", views.wizard_schema, name="wizard_schema"),
    path("sources/new/sync/", views.wizard_sync, name="wizard_sync"),
    path("sources/new/cancel/", views.wizard_cancel, name="wizard_cancel"),
    path("sources/oauth/start/", views.oauth_start, name="oauth_start"),
    path("sources/oauth/callback/", views.oauth_callback, name="oauth_callback"),
    path("sources/<int:pk>/", views.source_detail, name="detail"),
    path("sources/<int:pk>/runs/", views.source_runs, name="runs"),
    path("sources/<int:pk>/models/", views.source_models, name="models"),
    path("sources/<int:pk>/settings/", views.source_settings, name="settings"),
    path("sources/<int:pk>/enable/", views.source_enable, name="enable"),
    path("sources/<int:pk>/sync/", views.source_sync, name="sync"),
    path("sources/<int:pk>/full-sync/", views.source_full_sync, name="full_sync"),
    path("sources/<int:pk>/reconnect/", views.source_reconnect, name="reconnect"),
    path("sources/<int:pk>/delete/", views.source_delete, name="delete"),
]
