from __future__ import annotations

from django.urls import path

from . import views

app_name = "models_app"
urlpatterns = [
    path("sources/<int:source_id>/models/new/", views.model_new, name="new"),
    path("sources/<int:source_id>/models/preview/", views.model_preview, name="preview"),
    path("models/<int:data_model_id>/", views.model_detail, name="detail"),
    path("models/<int:data_model_id>/delete/", views.model_delete, name="delete"),
]
