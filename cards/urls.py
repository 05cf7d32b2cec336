"""Card URLs: the public card page and vCard, and the signed-in card list."""

from django.urls import path

from . import views, web

app_name = "cards"
urlpatterns = [
    path("c/<uuid:public_id>/", views.public_card, name="public"),
    path("c/<uuid:public_id>/vcard.vcf", views.vcard_download, name="vcard"),
    path("cards/", web.card_list, name="list"),
]
