from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.architectures import views as architectures
from webapp.checkpoints import views as checkpoints
from webapp.core.health import readyz
from webapp.datasets import views as datasets
from webapp.jobs import views as jobs


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", jobs.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("architectures/new/", architectures.architecture_new, name="architecture-new"),
    path("architectures/<int:pk>/", architectures.architecture_detail, name="architecture-detail"),
    path(
        "architectures/<int:pk>/viewer.json",
        architectures.architecture_viewer_data,
        name="architecture-viewer-data",
    ),
    # Before the per-kind route below, whose slug would take "labels" and "delete".
    path(
        "architectures/<int:pk>/labels/",
        architectures.architecture_labels,
        name="architecture-labels",
    ),
    path(
        "architectures/<int:pk>/delete/",
        architectures.architecture_delete,
        name="architecture-delete",
    ),
    # One route per job kind: /architectures/<pk>/inspect/, …/train/, …/predict/.
    path(
        "architectures/<int:pk>/<slug:kind>/",
        architectures.architecture_submit,
        name="architecture-submit",
    ),
    path(
        "architectures/<int:pk>/<slug:kind>/checks/",
        architectures.architecture_checks,
        name="architecture-checks",
    ),
    path("datasets/new/", datasets.dataset_new, name="dataset-new"),
    path("datasets/<int:pk>/", datasets.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/examples/<int:label>/<int:index>/", datasets.dataset_example,
         name="dataset-example"),  # fmt: skip
    path("checkpoints/new/", checkpoints.checkpoint_new, name="checkpoint-new"),
    path("checkpoints/<int:pk>/", checkpoints.checkpoint_detail, name="checkpoint-detail"),
    path("jobs/<int:pk>/", jobs.job_detail, name="job-detail"),
    path("jobs/<int:pk>/row/", jobs.job_row, name="job-row"),
    path("jobs/<int:pk>/cancel/", jobs.job_cancel, name="job-cancel"),
    path("jobs/<int:pk>/retry/", jobs.job_retry, name="job-retry"),
    path("jobs/<int:pk>/labels/", jobs.job_labels, name="job-labels"),
    path("jobs/<int:pk>/delete/", jobs.job_delete, name="job-delete"),
    path("jobs/<int:pk>/charts.json", jobs.job_charts_data, name="job-charts-data"),
    # Downloads: metrics.csv / metrics.json, compare.csv / compare.json (other suffixes 404).
    path("jobs/<int:pk>/metrics.<str:fmt>", jobs.job_metrics_export, name="job-metrics-export"),
    path("jobs/compare/", jobs.job_compare, name="job-compare"),
    path("jobs/compare.<str:fmt>", jobs.job_compare_export, name="job-compare-export"),
    path("api/v1/", include("webapp.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),  # liveness: the process answers
    path("readyz", readyz, name="readyz"),  # readiness: database, broker and storage answer
]

# Errors raised outside views (in a middleware's response phase) get the same answers.
handler500 = "webapp.core.middleware.server_error"

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
