"""REST API routes, under /api/v1/."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from webapp.architectures.api.views import ArchitectureViewSet, ZooView
from webapp.checkpoints.api.views import CheckpointViewSet
from webapp.datasets.api.views import BuiltinDatasetsView, DatasetViewSet
from webapp.jobs.api.views import GHNsView, JobViewSet

router = DefaultRouter()
router.register("architectures", ArchitectureViewSet, basename="api-architecture")
router.register("checkpoints", CheckpointViewSet, basename="api-checkpoint")
router.register("datasets", DatasetViewSet, basename="api-dataset")
router.register("jobs", JobViewSet, basename="api-job")

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("zoo/", ZooView.as_view(), name="api-zoo"),
    path("datasets/builtin/", BuiltinDatasetsView.as_view(), name="api-datasets-builtin"),
    path("ghns/", GHNsView.as_view(), name="api-ghns"),
    path("", include(router.urls)),
]
