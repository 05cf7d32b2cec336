"""Email URLs."""

from django.urls import path

from . import views, web

app_name = "emails"
urlpatterns = [
    path("emails/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("emails/send/", web.send, name="send"),
]
