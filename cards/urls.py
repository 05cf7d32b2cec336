"""Public card URLs."""

from django.urls import path

from . import views

app_name = "cards"
urlpatterns = [
    path("c/<uuid:public_id>/", views.public_card, name="public"),
    path("c/<uuid:public_id>/vcard.vcf", views.vcard_download, name="vcard"),
]
