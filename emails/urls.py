"""Email URLs; with django-anymail installed, also the ESPs' tracking webhooks
(/emails/anymail/<esp>/tracking/, see emails/webhooks.py)."""

from django.urls import include, path

from . import views, web
from .webhooks import tracking_urlpatterns

app_name = "emails"
urlpatterns = [
    path("emails/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("emails/send/", web.send, name="send"),
    path("emails/anymail/", include(tracking_urlpatterns())),
]
