"""Dashboard URLs: /background-jobs/ (also the site root) and the per-job pages and actions."""

from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "bulkjobs"
urlpatterns = [
    # The site root is the dashboard (sign-in first for anonymous visitors).
    path("", RedirectView.as_view(pattern_name="bulkjobs:dashboard"), name="home"),
    path("background-jobs/", views.dashboard_view, name="dashboard"),
    path("background-jobs/jobs.json", views.jobs_json, name="jobs_json"),
    path("background-jobs/<slug:kind>/<int:pk>/", views.job_detail, name="job_detail"),
    path(
        "background-jobs/<slug:kind>/<int:pk>/items.csv",
        views.job_items_csv,
        name="job_items_csv",
    ),
    path("background-jobs/<slug:kind>/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("background-jobs/<slug:kind>/<int:pk>/retry/", views.retry, name="retry"),
]
