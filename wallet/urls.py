"""Wallet URLs: the PassKit web service (under /wallet/apple/, the default
APPLE_WEB_SERVICE_URL) and the public pass download beside the card page."""

from django.urls import path

from . import web
from .apple import views as apple

app_name = "wallet"
urlpatterns = [
    path("wallet/sync/", web.sync, name="sync"),
    path("c/<uuid:public_id>/pass.pkpass", apple.pass_download, name="apple_pass"),
    path(
        "wallet/apple/v1/devices/<str:device_id>/registrations/<str:pass_type_id>/<str:serial>",
        apple.registration,
        name="apple_registration",
    ),
    path(
        "wallet/apple/v1/devices/<str:device_id>/registrations/<str:pass_type_id>",
        apple.serials_for_device,
        name="apple_serials",
    ),
    path(
        "wallet/apple/v1/passes/<str:pass_type_id>/<str:serial>",
        apple.latest_pass,
        name="apple_latest_pass",
    ),
    path("wallet/apple/v1/log", apple.device_log, name="apple_log"),
]
