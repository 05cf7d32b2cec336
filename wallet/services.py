"""Creating wallet sync jobs, and the platform status shown by UIs."""

import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from . import platforms
from .models import BulkWalletApiJob, BulkWalletApiJobItem

log = logging.getLogger("ProcessBulkWalletApiJob")


def platform_status():
    """{"apple": {"label", "configured", "missing"}, "google": {...}} for UIs."""
    return platforms.status()


def create_wallet_job(company, cards=None, created_by=None):
    """Queue a job syncing the given cards (all the company's cards when None).

    Raises ValidationError, creating nothing, when no wallet platform is configured (the
    message names the missing settings), when a card belongs to another company, or when
    there is no card to sync. Duplicate cards are synced once.
    """
    status = platform_status()
    if not any(entry["configured"] for entry in status.values()):
        details = "; ".join(
            _("%(platform)s needs %(settings)s")
            % {"platform": entry["label"], "settings": ", ".join(entry["missing"])}
            for entry in status.values()
        )
        raise ValidationError(
            _("Wallet sync is not configured: %(details)s.") % {"details": details}
        )
    if cards is None:
        cards = list(company.cards.order_by("id"))
    else:
        cards = list(cards)
        if any(card.company_id != company.pk for card in cards):
            raise ValidationError(_("Some cards do not belong to this company."))
    unique = list({card.pk: card for card in cards}.values())
    if not unique:
        raise ValidationError(_("There are no cards to sync."))
    with transaction.atomic():
        job = BulkWalletApiJob.objects.create(
            company=company, created_by=created_by, total_items=len(unique)
        )
        BulkWalletApiJobItem.objects.bulk_create(
            [BulkWalletApiJobItem(job=job, card=card) for card in unique], batch_size=1000
        )
    skipped = [entry["label"] for entry in status.values() if not entry["configured"]]
    log.info(
        "Job %s created for company %s: %d card(s)%s",
        job.pk,
        company.pk,
        len(unique),
        f"; not configured: {', '.join(skipped)}" if skipped else "",
    )
    return job
