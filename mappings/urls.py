from __future__ import annotations

app_name = "mappings"
urlpatterns: list = []
