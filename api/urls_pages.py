from __future__ import annotations

from django.urls import path

from . import views_tokens

urlpatterns = [
    path("settings/api-tokens/", views_tokens.api_tokens, name="api_tokens"),
    path("settings/api-tokens/<int:apitoken_id>/revoke/", views_tokens.api_token_revoke, name="api_token_revoke"),
]
