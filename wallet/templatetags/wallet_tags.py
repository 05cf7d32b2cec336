"""`{% wallet_links card as links %}`: the Add-to-Wallet links of configured platforms."""

import logging

from django import template
from django.urls import reverse

from wallet import platforms
from wallet.models import CardWalletState

register = template.Library()
log = logging.getLogger("wallet")


@register.simple_tag
def wallet_links(card):
    """{"apple": url or "", "google": url or ""}; a platform not configured gets ""."""
    links = {"apple": "", "google": ""}
    if platforms.is_configured(platforms.APPLE):
        links["apple"] = reverse("wallet:apple_pass", kwargs={"public_id": card.public_id})
    # The save link only references the object, so it is offered once a sync created it.
    if (
        platforms.is_configured(platforms.GOOGLE)
        and CardWalletState.objects.filter(card=card).exclude(google_object_id="").exists()
    ):
        try:
            from wallet.google.links import save_link  # only once Google is configured

            links["google"] = save_link(card)
        except Exception:
            # A broken Google setup must not take the public card page down with it.
            log.exception("Google Wallet save link for card %s failed", card.pk)
    return links
