from __future__ import annotations

app_name = "models_app"
urlpatterns: list = []
