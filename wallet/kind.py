"""The wallet job kind: how wallet sync plugs into the engine (see wallet/batch.py for the work).

Kept free of the platform clients' imports (cryptography, httpx, google-auth), so that
registering the kind at start-up costs nothing for the email processor's cron runs.
"""

from django.db.models import F
from django.utils.translation import gettext_lazy

from bulkjobs.kinds import InterruptedPolicy, JobKind

from .models import BulkWalletApiJob, BulkWalletApiJobItem


class WalletJobKind(JobKind):
    name = "wallet"
    label = gettext_lazy("Wallet sync jobs")
    label_in_sentence = gettext_lazy("wallet sync jobs")
    job_noun = gettext_lazy("wallet sync job")
    item_noun = gettext_lazy("card")
    item_noun_plural = gettext_lazy("cards")
    done_verb = gettext_lazy("synced")
    provider_wait_label = gettext_lazy("Waiting for Apple or Google")
    log_name = "ProcessBulkWalletApiJob"
    command = "process_wallet_jobs"
    job_model = BulkWalletApiJob
    item_model = BulkWalletApiJobItem
    batch_size_setting = "WALLET_BATCH_SIZE"
    concurrency_setting = "WALLET_CONCURRENCY"
    connections_setting = "WALLET_CONNECTIONS"
    company_rate_setting = "WALLET_COMPANY_RATE"
    # A job has at most one item per card of its company: the join needs no index of its own.
    search_fields = ("card__full_name",)
    search_label = gettext_lazy("Find a card: holder's name starts with")
    # One result column per platform on the job page: its result, its detail under it.
    folded_columns = {"apple_detail": "apple_result", "google_detail": "google_result"}
    # Idempotent: the same pass or object is written again, so an interrupted item is redone.
    interrupted_policy = InterruptedPolicy.REDO

    def batch_items(self, queryset):
        return queryset.select_related("card__company")

    def batch_order(self):
        # Cards never tried first: an item waiting for a paused platform (Outcome.WAIT)
        # comes back every PLATFORM_RECHECK_SECONDS and must not crowd out the other
        # platform's updates of cards not yet synced.
        return (F("next_attempt_at").asc(nulls_first=True), "id")

    def batch_handler(self, job, items):
        from .batch import WalletBatch

        return WalletBatch(job, items)

    def describe_item(self, item):
        return f"item {item.pk} (card {item.card_id})"
