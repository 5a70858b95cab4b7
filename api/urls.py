"""/api/v1/: every route of a workspace is under workspaces/<workspace_id>/ (the token's own workspace; any other
id is a 404). A new group of routes is a `path(W + "...", View.as_view())` line here."""

from __future__ import annotations

from django.urls import path

from .schema import docs_view, root_view, schema_view
from .views import config as cfg
from .views import mappings as m
from .views import models as dm
from .views import monitoring as mon
from .views import sources as src

app_name = "api"
W = "workspaces/<int:workspace_id>/"

urlpatterns = [
    path("", root_view, name="root"),
    path("schema/", schema_view, name="schema"),
    path("docs/", docs_view, name="docs"),
    path("workspaces/", src.WorkspaceList.as_view(), name="workspaces"),
    path(W, src.WorkspaceDetail.as_view(), name="workspace"),
    # sources, collections, sync runs
    path(W + "sources/", src.SourceList.as_view(), name="sources"),
    path(W + "sources/<int:source_id>/", src.SourceDetail.as_view(), name="source"),
    path(W + "sources/<int:source_id>/enable/", src.SourceEnable.as_view(), name="source_enable"),
    path(W + "sources/<int:source_id>/disable/", src.SourceDisable.as_view(), name="source_disable"),
    path(W + "sources/<int:source_id>/sync/", src.SourceSync.as_view(), name="source_sync"),
    path(W + "sources/<int:source_id>/full-sync/", src.SourceFullSync.as_view(), name="source_full_sync"),
    path(W + "sources/<int:source_id>/collections/", src.CollectionList.as_view(), name="collections"),
    path(
        W + "sources/<int:source_id>/collections/<str:collection>/schema/",
        src.CollectionSchema.as_view(),
        name="collection_schema",
    ),
    path(W + "sources/<int:source_id>/preview/", dm.SourcePreview.as_view(), name="source_preview"),
    path(W + "sync-runs/", src.SyncRunList.as_view(), name="sync_runs"),
    path(W + "sync-runs/<int:sync_run_id>/", src.SyncRunDetail.as_view(), name="sync_run"),
    # data models
    path(W + "models/", dm.DataModelList.as_view(), name="models"),
    path(W + "models/<int:data_model_id>/", dm.DataModelDetail.as_view(), name="model"),
    path(W + "models/<int:data_model_id>/preview/", dm.DataModelPreview.as_view(), name="model_preview"),
    # destinations, profile spaces
    path(W + "destinations/", m.DestinationList.as_view(), name="destinations"),
    path(W + "destinations/<int:destination_id>/", m.DestinationDetail.as_view(), name="destination"),
    path(W + "destinations/<int:destination_id>/profile-spaces/", m.ProfileSpaceList.as_view(), name="profile_spaces"),
    path(W + "profile-spaces/<int:profile_space_id>/", m.ProfileSpaceDetail.as_view(), name="profile_space"),
    # mappings, delivery runs
    path(W + "mappings/", m.MappingList.as_view(), name="mappings"),
    path(W + "mappings/<int:mapping_id>/", m.MappingDetail.as_view(), name="mapping"),
    path(W + "mappings/<int:mapping_id>/enable/", m.MappingEnable.as_view(), name="mapping_enable"),
    path(W + "mappings/<int:mapping_id>/disable/", m.MappingDisable.as_view(), name="mapping_disable"),
    path(W + "mappings/<int:mapping_id>/test/", m.MappingTest.as_view(), name="mapping_test"),
    path(W + "mappings/<int:mapping_id>/resync/", m.MappingResync.as_view(), name="mapping_resync"),
    path(W + "mappings/<int:mapping_id>/sample/", m.MappingSample.as_view(), name="mapping_sample"),
    path(W + "mappings/<int:mapping_id>/rejected/", m.RejectedList.as_view(), name="mapping_rejected"),
    path(W + "mappings/<int:mapping_id>/rejected/retry/", m.RejectedRetry.as_view(), name="mapping_retry"),
    path(W + "delivery-runs/", m.DeliveryRunList.as_view(), name="delivery_runs"),
    path(W + "delivery-runs/<int:delivery_run_id>/", m.DeliveryRunDetail.as_view(), name="delivery_run"),
    # the record debugger, alerts
    path(W + "records/", mon.RecordSearch.as_view(), name="records"),
    path(W + "records/<int:record_id>/", mon.RecordDetail.as_view(), name="record"),
    path(W + "alerts/rules/", mon.AlertRules.as_view(), name="alert_rules"),
    path(W + "alerts/channels/", mon.AlertChannelList.as_view(), name="alert_channels"),
    path(W + "alerts/channels/<int:alertchannel_id>/", mon.AlertChannelDetail.as_view(), name="alert_channel"),
    path(W + "alerts/channels/<int:alertchannel_id>/test/", mon.AlertChannelTest.as_view(), name="alert_channel_test"),
    path(W + "alerts/events/", mon.AlertEventList.as_view(), name="alert_events"),
    path(W + "alerts/problems/", mon.AlertProblemList.as_view(), name="alert_problems"),
    # configuration as code (api.config: the same plan / apply as manage.py hubsync_apply)
    path(W + "config/export/", cfg.ConfigExport.as_view(), name="config_export"),
    path(W + "config/plan/", cfg.ConfigPlan.as_view(), name="config_plan"),
    path(W + "config/apply/", cfg.ConfigApply.as_view(), name="config_apply"),
]
