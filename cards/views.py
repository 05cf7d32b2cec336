"""The public card page and the vCard download; both are public by design (the unguessable public id is the link)."""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404

from .locale import render_for_company
from .models import BusinessCard
from .vcard import build_vcard, vcard_filename


def _public_card(public_id):
    return get_object_or_404(BusinessCard.objects.select_related("company"), public_id=public_id)


def public_card(request, public_id):
    card = _public_card(public_id)
    # In the card's company's language, like the email that links to it.
    return render_for_company(request, card.company, "cards/public_card.html", {"card": card})


def vcard_download(request, public_id):
    card = _public_card(public_id)
    response = HttpResponse(build_vcard(card), content_type="text/vcard; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{vcard_filename(card)}"'
    return response
