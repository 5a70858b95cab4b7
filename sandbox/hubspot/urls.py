from __future__ import annotations

from django.urls import path, re_path

from . import api, oauth

app_name = "sandbox_hubspot"

OT = r"(?P<otype>[A-Za-z0-9_\-]+)"

urlpatterns = [
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
    re_path(rf"^crm/v3/objects/{OT}/(?P<object_id>[^/]+)/?$", api.object_read, name="object_read"),
    re_path(rf"^crm/v3/properties/{OT}/?$", api.properties_list, name="properties_list"),
    re_path(rf"^crm/v3/properties/{OT}/groups/?$", api.property_groups, name="property_groups"),
    re_path(rf"^crm/v3/properties/{OT}/(?P<name>[^/]+)/?$", api.property_read, name="property_read"),
    re_path(r"^crm/v3/owners/?$", api.owners_list, name="owners_list"),
    re_path(r"^crm/v3/owners/(?P<owner_id>[^/]+)/?$", api.owner_read, name="owner_read"),
]
