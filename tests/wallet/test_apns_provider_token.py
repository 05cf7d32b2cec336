"""The APNs provider token shared by every process through the database, asserted at the
loopback HTTP/2 APNs server: one token across cron runs (two real ones in
tests/processes/wallet/), renewed after 50 minutes or at once when APNs calls a token of
20 minutes or more expired, never two within 20 minutes."""

import threading
import time

import pytest
import time_machine

from tests.wallet.conftest import APNS_KEY_ID, TEAM_ID
from wallet.apple import apns
from wallet.apple.apns_token import ProviderToken
from wallet.models import ApnsProviderToken

MINUTE = 60


def bearers(server):
    return [request.headers["authorization"] for request in server.requests]


def fresh_process_client():
    """The shared client as the next cron run (a new process) would create it."""
    apns.close_shared_client()
    return apns.shared_client()


@pytest.mark.django_db
def test_a_new_process_reuses_the_stored_token(apns_server, chain):
    apns.shared_client().push("a" * 64)
    client = fresh_process_client()
    client.push("b" * 64)
    first, second = bearers(apns_server)
    assert first == second
    assert client.token.minted == 0
    row = ApnsProviderToken.objects.get()
    assert (row.key_id, row.team_id) == (APNS_KEY_ID, TEAM_ID)
    assert first == f"bearer {row.token}"


@pytest.mark.django_db
def test_the_token_is_renewed_after_50_minutes_not_before(apns_server):
    start = time.time()
    with time_machine.travel(start, tick=False):
        apns.shared_client().push("a" * 64)
    with time_machine.travel(start + 49 * MINUTE, tick=False):
        fresh_process_client().push("a" * 64)
    with time_machine.travel(start + 51 * MINUTE, tick=False):
        fresh_process_client().push("a" * 64)
    with time_machine.travel(start + 52 * MINUTE, tick=False):
        # The same long-running client as at 51 minutes, and a new process: both reuse it.
        apns.shared_client().push("a" * 64)
        fresh_process_client().push("a" * 64)
    tokens = bearers(apns_server)
    assert tokens[0] == tokens[1] != tokens[2] == tokens[3] == tokens[4]
    row = ApnsProviderToken.objects.get()
    assert abs(row.issued_at.timestamp() - (start + 51 * MINUTE)) < 1


@pytest.mark.django_db
def test_a_long_running_client_rereads_after_50_minutes(apns_server):
    start = time.time()
    with time_machine.travel(start, tick=False):
        worker = apns.shared_client()
        worker.push("a" * 64)
    with time_machine.travel(start + 55 * MINUTE, tick=False):
        worker.push("a" * 64)
    first, second = bearers(apns_server)
    assert first != second
    assert second == f"bearer {ApnsProviderToken.objects.get().token}"


@pytest.mark.django_db
def test_expired_token_is_renewed_at_once_and_the_push_retried(apns_server):
    start = time.time()
    with time_machine.travel(start, tick=False):
        client = apns.shared_client()
        client.push("a" * 64)
    apns_server.reply("t", (403, "ExpiredProviderToken"))
    with time_machine.travel(start + 25 * MINUTE, tick=False):
        assert client.push("t") is apns.PushResult.SENT
    first, refused, retried = bearers(apns_server)
    assert first == refused != retried
    assert client.token.minted == 2
    assert retried == f"bearer {ApnsProviderToken.objects.get().token}"


@pytest.mark.django_db
def test_a_token_under_20_minutes_is_not_renewed_the_batch_is_told_why(apns_server):
    client = apns.shared_client()
    apns_server.reply("t", (403, "ExpiredProviderToken"))
    with pytest.raises(apns.ApnsRefused, match="ExpiredProviderToken.*clock"):
        client.push("t")
    apns_server.reply("u", (403, "InvalidProviderToken"))
    with pytest.raises(apns.ApnsRefused, match="InvalidProviderToken.*APNS_KEY_ID"):
        client.push("u")
    # No retry and no second token: Apple answers 429 to tokens within 20 minutes.
    assert len(apns_server.requests) == 2
    assert client.token.minted == 1


@pytest.mark.django_db
def test_invalid_token_twice_is_refused_after_one_renewal(apns_server):
    start = time.time()
    with time_machine.travel(start, tick=False):
        client = apns.shared_client()
        client.push("a" * 64)
    apns_server.reply("u", (403, "InvalidProviderToken"), (403, "InvalidProviderToken"))
    with time_machine.travel(start + 30 * MINUTE, tick=False):
        with pytest.raises(apns.ApnsRefused, match="also with a new token"):
            client.push("u")
    assert len(apns_server.requests) == 3
    assert client.token.minted == 2


@pytest.mark.django_db
def test_a_token_another_process_renewed_is_adopted_not_renewed_again(apns_server, chain_files):
    start = time.time()
    with time_machine.travel(start, tick=False):
        worker = apns.shared_client()
        worker.push("a" * 64)
    old = bearers(apns_server)[0].removeprefix("bearer ")
    with time_machine.travel(start + 25 * MINUTE, tick=False):
        # Another process had its push refused first and renewed the shared token.
        other = ProviderToken(chain_files["apns_key"].read_bytes(), APNS_KEY_ID, TEAM_ID)
        renewed = other.renew(old)
        assert renewed and renewed != old
        # This worker still holds the old token; APNs refuses it, and it takes the new one.
        apns_server.reply("t", (403, "ExpiredProviderToken"))
        assert worker.push("t") is apns.PushResult.SENT
    assert bearers(apns_server)[1:] == [f"bearer {old}", f"bearer {renewed}"]
    assert (worker.token.minted, other.minted) == (1, 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("minutes", [0, 51])
def test_racing_processes_share_one_new_token(apple, chain_files, minutes):
    """Eight "processes" (their own ProviderToken, their own database connection) need a
    token at the same moment: first with no token stored, then with a stale one."""
    key = chain_files["apns_key"].read_bytes()
    start = time.time()
    if minutes:
        with time_machine.travel(start, tick=False):
            ProviderToken(key, APNS_KEY_ID, TEAM_ID).get()
    stale = set(ApnsProviderToken.objects.values_list("token", flat=True))
    processes = [ProviderToken(key, APNS_KEY_ID, TEAM_ID) for _ in range(8)]
    barrier = threading.Barrier(len(processes))
    tokens, errors = [], []

    def take(provider):
        from django.db import connection

        try:
            barrier.wait(timeout=10)
            tokens.append(provider.get())
        except Exception as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)
        finally:
            connection.close()

    with time_machine.travel(start + minutes * MINUTE, tick=True):
        threads = [threading.Thread(target=take, args=(p,)) for p in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert errors == []
    assert len(tokens) == len(processes) and len(set(tokens)) == 1
    assert tokens[0] not in stale
    assert sum(provider.minted for provider in processes) == 1
    assert list(ApnsProviderToken.objects.values_list("token", flat=True)) == tokens[:1]
