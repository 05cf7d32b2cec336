"""Benchmark: Google Wallet cards synced per second against the loopback fake server.

Run: DJANGO_SETTINGS_MODULE=config.settings .venv/bin/python -m bench.bench_google [cards]

Measures the client alone (no job engine, no database): cards are unsaved model
instances, synced in batches of 10 with one GoogleWalletClient per batch as the wallet
job kind does. Three phases: first sync (PATCH 404 + insert), resync of changed cards
(one PATCH), and unchanged cards (hash only, no HTTP). The server is in the same
process, so its CPU competes with the client's: figures are a lower bound on the
client's own speed and say nothing about Google's latency. The shared rate limit
(GOOGLE_WALLET_RATE_LIMIT, a database bucket) is off here: it would measure the limit,
and there is no database.
"""

import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

BATCH = 10


def bench_google(card_count=500):
    """Print cards/s for each phase and return them as a dict."""
    import django

    # A throwaway key: production settings refuse to start without one, and nothing a
    # benchmark signs outlives it.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))

    django.setup()
    from django.test.utils import override_settings

    from cards.models import BusinessCard, Company
    from tests.wallet.google_server import FakeGoogleWallet, google_settings, make_service_account
    from wallet.google.client import GoogleWalletClient

    company = Company(pk=1, name="Acme", slug="acme")
    cards = [
        BusinessCard(
            pk=n,
            company=company,
            public_id=uuid.uuid4(),
            full_name=f"Person {n}",
            job_title="Engineer",
            email=f"person{n}@example.com",
            phone="+49 30 1234567",
            website="https://example.com",
            address="Somewhere 1\nBerlin",
        )
        for n in range(1, card_count + 1)
    ]
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        info, key_path, public_key = make_service_account(Path(tmp))
        with FakeGoogleWallet(public_key, info["client_email"]) as fake:
            overrides = {**google_settings(fake, key_path), "GOOGLE_WALLET_RATE_LIMIT": "0"}
            with override_settings(**overrides):
                hashes = {}

                def run(phase):
                    started = time.perf_counter()
                    requests_before = len(fake.requests)
                    for start in range(0, card_count, BATCH):
                        with GoogleWalletClient() as client:
                            for card in cards[start : start + BATCH]:
                                _, hashes[card.pk] = client.sync_card(card, hashes.get(card.pk, ""))
                    elapsed = time.perf_counter() - started
                    rate = card_count / elapsed
                    calls = len(fake.requests) - requests_before
                    figures[phase] = rate
                    print(
                        f"{phase:<10} {card_count} cards in {elapsed:6.2f} s = {rate:8.0f} cards/s"
                        f"  ({calls} API requests)"
                    )

                run("insert")
                for card in cards:
                    card.job_title = "Senior Engineer"
                run("patch")
                run("unchanged")
                print(f"token requests: {fake.token_requests}")
    return figures


if __name__ == "__main__":
    bench_google(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
