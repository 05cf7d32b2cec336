"""Email URLs."""

from django.urls import path

from . import views

app_name = "emails"
urlpatterns = [
    path("emails/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
