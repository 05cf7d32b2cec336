"""Email URLs; with django-anymail installed, also the ESPs' tracking webhooks
(/emails/anymail/<esp>/tracking/, see emails/webhooks.py)."""

from django.urls import include, path

from . import review, views, web
from .webhooks import tracking_urlpatterns

app_name = "emails"
urlpatterns = [
    path("emails/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("emails/send/", web.send, name="send"),
    path("emails/send/review/<uuid:draft_id>/", review.review, name="review"),
    path("emails/send/review/<uuid:draft_id>/email/", review.draft_email, name="draft_email"),
    path("emails/send/review/<uuid:draft_id>/test/", review.test_send, name="test_send"),
    path("emails/send/review/<uuid:draft_id>/confirm/", review.confirm, name="confirm"),
    path("emails/anymail/", include(tracking_urlpatterns())),
]
