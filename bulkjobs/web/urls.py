"""Dashboard URLs: /background-jobs/ and the per-job pages and actions; /healthz."""

from django.urls import path

from ..ops import health
from . import actions, export, views

app_name = "bulkjobs"
urlpatterns = [
    path("healthz", health.healthz_view, name="healthz"),
    path("background-jobs/", views.dashboard_view, name="dashboard"),
    path("background-jobs/jobs.json", views.jobs_json, name="jobs_json"),
    path("background-jobs/activity/", views.activity_page, name="activity"),
    path("background-jobs/<slug:kind>/<int:pk>/", views.job_detail, name="job_detail"),
    path("background-jobs/<slug:kind>/<int:pk>/job.json", views.job_json, name="job_json"),
    path(
        "background-jobs/<slug:kind>/<int:pk>/items.csv",
        export.job_items_csv,
        name="job_items_csv",
    ),
    path("background-jobs/<slug:kind>/<int:pk>/cancel/", actions.cancel, name="cancel"),
    path("background-jobs/<slug:kind>/<int:pk>/pause/", actions.pause, name="pause"),
    path("background-jobs/<slug:kind>/<int:pk>/resume/", actions.resume, name="resume"),
    path("background-jobs/<slug:kind>/<int:pk>/retry/", actions.retry, name="retry"),
    path(
        "background-jobs/<slug:kind>/<int:pk>/retry-unknown/",
        actions.retry_unknown,
        name="retry_unknown",
    ),
]
