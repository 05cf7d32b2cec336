"""Benchmark: Apple passes built and signed per second, and cards synced per second
through the real job engine against loopback APNs (HTTP/2 over TLS) and, when the
wallet.google package is present, the loopback Google Wallet server.

Run: .venv/bin/python -m bench.bench_wallet [cards]
     .venv/bin/python -m bench.bench_wallet --latency-ms 50 [cards]

With --latency-ms, both servers answer every request that long after it arrived (a
provider across a network) and the benchmark compares one run serving 1 company at a
time with one serving 8 at once (run_once's concurrency), cards/s for changed cards
(one pass signed, one APNs push, one Google PATCH each), with the Google limit at its
default 20/s and off; the per-company pace (BULKJOBS_WALLET_COMPANY_RATE) is off.

It uses a throw-away SQLite database in a temporary directory (set BENCH_DATABASE_URL
to an EMPTY scratch PostgreSQL/MariaDB database to measure those instead; its tables
are created by migrate). Every card has one registered device, so a changed card costs
one signed pass and one APNs push. The fake servers run in this process and compete
for its CPU: the figures are a lower bound, and say nothing about Apple's or Google's
latency.

     .venv/bin/python -m bench.bench_wallet --autosync [cards]

measures only what queueing cards for automatic sync (wallet/autosync.py) costs, Apple
Wallet configured, every card with a stored pass: saved one commit each, saved in one
transaction, deleted by one queryset delete (which also signs each card's voided pass):
milliseconds and queries per card. No provider is involved.
"""

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path


def _setup_django(tmp):
    os.environ["DATABASE_URL"] = os.environ.get(
        "BENCH_DATABASE_URL", f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # A throwaway key: production settings refuse to start without one, and nothing a
    # benchmark signs outlives it.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["LOG_FILE"] = str(Path(tmp) / "bench.log")
    # Throughput, not the original's pace of 10 cards a minute per company (with it, 100
    # cards take ten minutes); set it to measure a paced run.
    os.environ.setdefault("BULKJOBS_WALLET_COMPANY_RATE", "0")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _rate(label, count, elapsed, unit, extra=""):
    rate = count / elapsed
    print(f"{label:<34} {count:5d} in {elapsed:6.2f} s = {rate:8.1f} {unit}/s{extra}")
    return rate


def bench_wallet(card_count=300):
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        _setup_django(tmp)
        from django.test.utils import override_settings

        from bulkjobs.engine import run_once
        from bulkjobs.kinds import get_kind
        from bulkjobs.models import Status
        from cards.models import BusinessCard, Company
        from tests.conftest import make_cards
        from tests.wallet.apns_server import FakeApns, make_server_certificate
        from tests.wallet.conftest import PASS_TYPE_ID, TEAM_ID, apple_settings, signed_pass
        from wallet.apple import apns, pkpass
        from wallet.apple.devcerts import make_chain, write_chain
        from wallet.models import AppleDeviceRegistration, CardWalletState
        from wallet.services import create_wallet_job

        chain = make_chain(TEAM_ID, PASS_TYPE_ID)
        paths = write_chain(chain, tmp)
        server_cert, server_key = make_server_certificate(chain, tmp)
        apple = {**apple_settings(paths), "GOOGLE_WALLET_ISSUER_ID": ""}
        with FakeApns(str(server_cert), str(server_key)) as server:
            apple["APNS_BASE_URL"] = server.url
            with override_settings(**apple):
                company = Company.objects.create(name="Bench Co", slug="bench")
                cards = make_cards(company, card_count, address="Somewhere 1\nBerlin")
                states = [CardWalletState.objects.for_card(card) for card in cards]
                AppleDeviceRegistration.objects.bulk_create(
                    AppleDeviceRegistration(
                        device_library_id=f"device-{s.pk}", push_token=f"{s.pk:064x}", state=s
                    )
                    for s in states
                )
                material = pkpass.conf.signing_material()
                print(f"Wallet benchmark, {card_count} cards, database {_vendor()}")

                started = time.perf_counter()
                for card, state in zip(cards, states, strict=True):
                    pkpass.build(card, state)
                figures["build"] = _rate(
                    "pass.json + manifest built", card_count, time.perf_counter() - started,
                    "passes",
                )  # fmt: skip
                started = time.perf_counter()
                for card, state in zip(cards, states, strict=True):
                    signed_pass(card, state, material)
                figures["build_sign"] = _rate(
                    "passes built + signed + zipped", card_count, time.perf_counter() - started,
                    "passes",
                )  # fmt: skip

                def sync(label, key):
                    create_wallet_job(company)
                    pushes_before = len(server.requests)
                    kind = get_kind("wallet")
                    job_model = kind.job_model
                    started = time.perf_counter()
                    while job_model.objects.filter(status__in=[Status.PENDING,
                                                               Status.PROCESSING]).exists():  # fmt: skip
                        run_once(kind)
                    elapsed = time.perf_counter() - started
                    pushes = len(server.requests) - pushes_before
                    figures[key] = _rate(label, card_count, elapsed, "cards",
                                         f"  ({pushes} APNs pushes)")  # fmt: skip

                sync("engine: first sync (sign + push)", "first_sync")
                for card in cards:
                    card.job_title = "Senior Engineer"
                BusinessCard.objects.filter(company=company).update(job_title="Senior Engineer")
                sync("engine: changed cards (sign + push)", "changed_sync")
                sync("engine: unchanged cards", "unchanged_sync")
                print(f"APNs connections: {server.connections}, provider tokens minted: "
                      f"{apns.shared_client().token.minted}")  # fmt: skip
                figures.update(_bench_with_google(company, cards, sync, tmp))
            apns.close_shared_client()
    return figures


def _bench_with_google(company, cards, sync, tmp):
    try:
        from tests.wallet.google_server import (
            FakeGoogleWallet,
            google_settings,
            make_service_account,
        )
    except ImportError:
        print("Google Wallet: wallet.google / its fake server not present; skipped.")
        return {}
    from django.test.utils import override_settings

    from cards.models import BusinessCard

    info, key_path, public_key = make_service_account(Path(tmp))
    figures = {}
    with FakeGoogleWallet(public_key, info["client_email"]) as fake:
        overrides = {
            **google_settings(fake, key_path),
            # Loopback speed, not the shared 20/s limit (--latency-ms measures with it).
            "GOOGLE_WALLET_RATE_LIMIT": "0",
        }
        with override_settings(**overrides):
            BusinessCard.objects.filter(company=company).update(job_title="Principal Engineer")
            sync("engine: Apple + Google, changed", "both_changed")
            sync("engine: Apple + Google, unchanged", "both_unchanged")
            print(f"Google API requests: {len(fake.requests)}")
    return figures


def _vendor():
    from django.db import connection

    return connection.vendor


COMPANIES = 8


def bench_latency(card_count=160, latency_ms=50):
    """Cards/s through the engine against servers that answer after `latency_ms`."""
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        _setup_django(tmp)
        from django.conf import settings
        from django.test.utils import override_settings

        from bulkjobs.engine import run_once
        from bulkjobs.kinds import get_kind
        from bulkjobs.models import RateBucket, Status
        from cards.models import BusinessCard, Company
        from tests.wallet.apns_server import FakeApns, make_server_certificate
        from tests.wallet.conftest import PASS_TYPE_ID, TEAM_ID, apple_settings
        from tests.wallet.google_server import (
            FakeGoogleWallet,
            google_settings,
            make_service_account,
        )
        from wallet.apple import apns
        from wallet.apple.devcerts import make_chain, write_chain
        from wallet.models import AppleDeviceRegistration, CardWalletState
        from wallet.services import create_wallet_job

        chain = make_chain(TEAM_ID, PASS_TYPE_ID)
        paths = write_chain(chain, tmp)
        server_cert, server_key = make_server_certificate(chain, tmp)
        info, key_path, public_key = make_service_account(Path(tmp))
        kind = get_kind("wallet")
        per_company = max(1, card_count // COMPANIES)
        card_count = per_company * COMPANIES
        with (
            FakeApns(str(server_cert), str(server_key)) as apple_server,
            FakeGoogleWallet(public_key, info["client_email"]) as google_server,
        ):
            overrides = {
                **apple_settings(paths),
                "APNS_BASE_URL": apple_server.url,
                **google_settings(google_server, key_path),
                "GOOGLE_WALLET_RATE_LIMIT": "0",
                "BULKJOBS": {
                    **settings.BULKJOBS,
                    "WALLET_BATCH_SIZE": 10,
                    "WALLET_COMPANY_RATE": "0",
                },
            }
            companies = [
                Company.objects.create(name=f"Bench Co {n}", slug=f"bench-{n}")
                for n in range(COMPANIES)
            ]
            for company in companies:
                cards = BusinessCard.objects.bulk_create(
                    BusinessCard(company=company, full_name=f"Person {n}", job_title="Engineer")
                    for n in range(per_company)
                )
                AppleDeviceRegistration.objects.bulk_create(
                    AppleDeviceRegistration(
                        device_library_id=f"device-{card.pk}",
                        push_token=f"{card.pk:064x}",
                        state=CardWalletState.objects.for_card(card),
                    )
                    for card in cards
                )
            print(
                f"Wallet at {latency_ms} ms per Apple/Google request: {card_count} changed cards "
                f"of {COMPANIES} companies, database {_vendor()}"
            )

            def sync(concurrency, title):
                BusinessCard.objects.update(job_title=title)
                for company in companies:
                    create_wallet_job(company)
                active = kind.job_model.objects.filter(
                    status__in=[Status.PENDING, Status.PROCESSING]
                )
                started = time.perf_counter()
                while active.exists():
                    run_once(kind, concurrency=concurrency)
                return time.perf_counter() - started

            with override_settings(**overrides):
                sync(COMPANIES, "First sync")  # creates the Google objects; not measured
                apple_server.delay = google_server.delay = latency_ms / 1000
                phases = [(1, "20/s"), (COMPANIES, "20/s"), (COMPANIES, "0")]
                for number, (concurrency, google_limit) in enumerate(phases):
                    RateBucket.objects.all().delete()
                    with override_settings(GOOGLE_WALLET_RATE_LIMIT=google_limit):
                        elapsed = sync(concurrency, f"Title {number}")
                    label = f"{concurrency} at once, Google limit {google_limit}"
                    figures[(concurrency, google_limit)] = _rate(
                        label, card_count, elapsed, "cards"
                    )
            print(f"APNs connections: {apple_server.connections}, most streams open at once: "
                  f"{apple_server.max_open_streams}")  # fmt: skip
            apns.close_shared_client()
    return figures


def bench_autosync(card_count=200):
    """Per card: milliseconds and queries of queueing saved and deleted cards."""
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        _setup_django(tmp)
        from django.db import connection, transaction
        from django.test.utils import CaptureQueriesContext, override_settings

        from cards.models import BusinessCard, Company
        from tests.wallet.conftest import PASS_TYPE_ID, TEAM_ID, apple_settings
        from wallet.apple import store
        from wallet.apple.devcerts import make_chain, write_chain
        from wallet.models import BulkWalletApiJob, CardWalletState

        paths = write_chain(make_chain(TEAM_ID, PASS_TYPE_ID), tmp)
        apple = {**apple_settings(paths, apns=False), "GOOGLE_WALLET_ISSUER_ID": ""}
        with override_settings(**apple):
            company = Company.objects.create(name="Bench Co", slug="bench")
            for card in BusinessCard.objects.bulk_create(
                BusinessCard(company=company, full_name=f"Person {n}", job_title="Engineer")
                for n in range(card_count)
            ):
                store.current_pass(CardWalletState.objects.for_card(card), card)
            print(f"Automatic sync queueing, {card_count} cards, database {_vendor()}")

            def measure(label, change):
                # Each case queues into a new automatic job, as after a processor run.
                BulkWalletApiJob.objects.filter(automatic=True).delete()
                cards = list(BusinessCard.objects.filter(company=company))
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    change(cards)
                    elapsed = time.perf_counter() - started
                queued = BulkWalletApiJob.objects.get(automatic=True).total_items
                figures[label] = (1000 * elapsed / len(cards), len(captured) / len(cards))
                print(
                    f"{label:<32} {figures[label][0]:6.2f} ms, {figures[label][1]:5.2f} queries "
                    f"per card ({queued} queued)"
                )

            def save_each(cards):
                for card in cards:
                    card.save()

            def save_together(cards):
                with transaction.atomic():
                    save_each(cards)

            measure("saved, one commit each", save_each)
            measure("saved in one transaction", save_together)
            measure(
                "deleted by one queryset delete",
                lambda cards: BusinessCard.objects.filter(company=company).delete(),
            )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", type=int, nargs="?", help="cards (300; 160 with --latency-ms)")
    parser.add_argument(
        "--latency-ms", type=int, help="servers answer after this long; compares 1 and 8 at once"
    )
    parser.add_argument(
        "--autosync", action="store_true", help="only the queueing of saved and deleted cards"
    )
    options = parser.parse_args()
    if options.autosync:
        bench_autosync(options.cards or 200)
    elif options.latency_ms is not None:
        bench_latency(options.cards or 160, options.latency_ms)
    else:
        bench_wallet(options.cards or 300)
