"""The PassKit web service's bounds hold when requests race: threads, each with its own
database connection, on PostgreSQL or MariaDB (SQLite serialises writers, so it cannot
show a race)."""

import threading

import pytest
from django.db import connection
from django.test import Client

from tests.wallet.test_apple_web_service import auth, post_log, register_url
from wallet.models import AppleDeviceRegistration

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]

THREADS = 10


@pytest.fixture(autouse=True)
def server_database_only():
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("needs PostgreSQL or MariaDB (set DATABASE_URL)")


def at_once(call):
    """Status codes of `call(n)` for n in range(THREADS), all started together."""
    barrier = threading.Barrier(THREADS)
    statuses = [None] * THREADS

    def run(n):
        try:
            barrier.wait()
            statuses[n] = call(n).status_code
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


def test_racing_registrations_never_pass_the_cap(issued, settings):
    settings.APPLE_MAX_DEVICES_PER_PASS = 3
    statuses = at_once(
        lambda n: Client().post(
            register_url(issued, device=f"device-{n}"),
            data={"pushToken": f"{n:064x}"},
            content_type="application/json",
            **auth(issued),
        )
    )
    assert statuses == [201] * 3 + [429] * (THREADS - 3)
    assert AppleDeviceRegistration.objects.filter(state=issued).count() == 3


def test_racing_log_requests_of_one_new_client_never_pass_the_rate(apple, settings):
    settings.APPLE_LOG_REQUESTS_PER_MINUTE = 3
    statuses = at_once(lambda n: post_log(Client(), {"logs": [f"entry {n}"]}))
    assert statuses == [200] * 3 + [429] * (THREADS - 3)
