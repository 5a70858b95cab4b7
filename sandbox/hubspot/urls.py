from __future__ import annotations

from django.urls import path, re_path

from . import api, oauth, views

app_name = "sandbox_hubspot"

OT = r"(?P<otype>[A-Za-z0-9_\-]+)"

urlpatterns = [
    # Sandbox pages and their JSON twins
    path("", views.index, name="index"),
    path("knobs", views.knobs_update, name="knobs"),
    path("portals/new", views.portal_create, name="portal_create"),
    path("portals/<int:hub_id>/", views.portal_page, name="portal"),
    path("portals/<int:hub_id>/seed", views.portal_seed, name="portal_seed"),
    path("portals/<int:hub_id>/mutate", views.portal_mutate, name="portal_mutate"),
    path("portals/<int:hub_id>/properties", views.portal_property, name="portal_property"),
    path("portals/<int:hub_id>/edit", views.portal_edit, name="portal_edit"),
    path("portals/<int:hub_id>/webhooks", views.portal_webhooks, name="portal_webhooks"),
    path("_api/knobs", views.knobs_json, name="knobs_json"),
    path("_api/portals/<int:hub_id>/mutate", views.mutate_json, name="mutate_json"),
    path("_api/portals/<int:hub_id>/webhooks", views.webhooks_json, name="webhooks_json"),
    # OAuth
    path("oauth/authorize", oauth.authorize, name="authorize"),
    re_path(r"^oauth/(?:v1|v3|2026-03)/token/?$", api.token, name="token"),
    path("oauth/v3/token/introspect", api.introspect, name="introspect"),
    path("oauth/v1/access-tokens/<str:token_value>", api.access_token_info, name="access_token_info"),
    path("oauth/v1/refresh-tokens/<str:token_value>", api.refresh_token_info, name="refresh_token_info"),
    path("account-info/v3/details", api.account_details, name="account_details"),
    # CRM v3
    re_path(rf"^crm/v3/objects/{OT}/?$", api.objects_list, name="objects_list"),
    re_path(rf"^crm/v3/objects/{OT}/search/?$", api.objects_search, name="objects_search"),
    re_path(rf"^crm/v3/objects/{OT}/batch/read/?$", api.objects_batch_read, name="objects_batch_read"),
    re_path(rf"^crm/v3/objects/{OT}/gdpr-delete/?$", api.objects_gdpr_delete, name="objects_gdpr_delete"),
    re_path(rf"^crm/v3/objects/{OT}/merge/?$", api.objects_merge, name="objects_merge"),
    re_path(rf"^crm/v3/objects/{OT}/(?P<object_id>[^/]+)/?$", api.object_read, name="object_read"),
    re_path(rf"^crm/v3/properties/{OT}/?$", api.properties_list, name="properties_list"),
    re_path(rf"^crm/v3/properties/{OT}/groups/?$", api.property_groups, name="property_groups"),
    re_path(rf"^crm/v3/properties/{OT}/(?P<name>[^/]+)/?$", api.property_read, name="property_read"),
    re_path(r"^crm/v3/owners/?$", api.owners_list, name="owners_list"),
    re_path(r"^crm/v3/owners/(?P<owner_id>[^/]+)/?$", api.owner_read, name="owner_read"),
]
