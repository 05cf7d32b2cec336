"""One stored pass per card version: every path serves the stored bytes of the card's
current content, and the version (ETag, passesUpdatedSince) tells every version apart,
even two stored within one second, which Last-Modified cannot."""

from datetime import UTC, datetime, timedelta

import time_machine
from django.urls import reverse
from django.utils.http import http_date

from tests.wallet.conftest import verify_pkpass
from tests.wallet.test_apple_web_service import auth, pass_url, register, serials_url
from wallet.models import CardWalletState

MOMENT = datetime(2026, 3, 2, 9, 30, 15, 200_000, tzinfo=UTC)


def title_of(files):
    fields = files["pass.json"]["generic"]["secondaryFields"]
    return [field["value"] for field in fields if field["key"] == "title"]


def edit(card, title):
    card.job_title = title
    card.save()


def test_a_refresh_after_an_edit_returns_the_new_pass(client, issued, card, chain_files, tmp_path):
    first = client.get(pass_url(issued), **auth(issued))
    assert first.status_code == 200 and first["ETag"] == issued.etag

    edit(card, "Countess of Lovelace")
    # The device asks with what it holds; the card changed, so it gets the new pass.
    refreshed = client.get(pass_url(issued), HTTP_IF_NONE_MATCH=first["ETag"], **auth(issued))
    assert refreshed.status_code == 200
    assert refreshed["ETag"] != first["ETag"]
    assert title_of(verify_pkpass(refreshed.content, chain_files, tmp_path)) == [
        "Countess of Lovelace"
    ]
    # Stored once: the next refresh and the download serve those very bytes.
    issued.refresh_from_db()
    assert bytes(issued.apple_pass_data) == refreshed.content
    again = client.get(pass_url(issued), HTTP_IF_NONE_MATCH=refreshed["ETag"], **auth(issued))
    assert again.status_code == 304 and again["ETag"] == refreshed["ETag"]
    download = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    assert download.content == refreshed.content and download["ETag"] == refreshed["ETag"]


def test_an_older_stored_pass_is_never_served_after_an_edit(client, issued, card):
    # The download path stores too: after it, the web service has nothing older to give.
    edit(card, "Analyst")
    download = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    refreshed = client.get(pass_url(issued), **auth(issued))
    assert refreshed.content == download.content


def test_two_edits_in_one_second_give_two_validators(client, issued, card, chain_files, tmp_path):
    with time_machine.travel(MOMENT, tick=False):
        edit(card, "First")
        first = client.get(pass_url(issued), **auth(issued))
        edit(card, "Second")  # the same instant: same Last-Modified, another version
        second = client.get(pass_url(issued), HTTP_IF_NONE_MATCH=first["ETag"], **auth(issued))
    assert first["Last-Modified"] == second["Last-Modified"] == http_date(MOMENT.timestamp())
    assert second.status_code == 200
    assert first["ETag"] != second["ETag"]
    assert title_of(verify_pkpass(second.content, chain_files, tmp_path)) == ["Second"]
    # A device that only sends If-Modified-Since (whole seconds) cannot say which of the
    # two it holds: it gets the pass, never a 304 that could leave it on "First".
    by_date = client.get(
        pass_url(issued), HTTP_IF_MODIFIED_SINCE=first["Last-Modified"], **auth(issued)
    )
    assert by_date.status_code == 200 and by_date.content == second.content


def test_if_modified_since_gives_304_for_a_version_alone_in_its_second(client, issued, card):
    with time_machine.travel(MOMENT + timedelta(seconds=5), tick=False):
        edit(card, "Alone")
        response = client.get(pass_url(issued), **auth(issued))
    assert response.status_code == 200
    since = response["Last-Modified"]
    assert (
        client.get(pass_url(issued), HTTP_IF_MODIFIED_SINCE=since, **auth(issued)).status_code
        == 304
    )
    earlier = http_date(MOMENT.timestamp())
    assert (
        client.get(pass_url(issued), HTTP_IF_MODIFIED_SINCE=earlier, **auth(issued)).status_code
        == 200
    )


def test_passes_updated_since_lists_an_edit_within_the_same_second(client, issued, card):
    register(client, issued)
    with time_machine.travel(MOMENT, tick=False):
        client.get(pass_url(issued), **auth(issued))
        tag = client.get(serials_url()).json()["lastUpdated"]
        edit(card, "Later the same second")
        client.get(pass_url(issued), **auth(issued))  # stores the new version
        body = client.get(serials_url(), {"passesUpdatedSince": tag}).json()
    assert body["serialNumbers"] == [issued.apple_serial_number]
    assert int(body["lastUpdated"]) > int(tag)
    issued.refresh_from_db()
    assert body["lastUpdated"] == str(issued.apple_update_tag)


def test_an_unchanged_card_stores_no_new_version(client, issued, card):
    tag = issued.apple_update_tag
    card.save()  # saved without a change
    for _ in range(2):
        assert client.get(pass_url(issued), **auth(issued)).status_code == 200
    assert CardWalletState.objects.get(pk=issued.pk).apple_update_tag == tag


def test_a_store_that_lost_the_race_keeps_the_winners_version(issued, card):
    from wallet.apple import store

    stale = CardWalletState.objects.get(pk=issued.pk)
    edit(card, "Winner")
    assert store.current_pass(issued, card)  # another process stores first
    # The stale copy's compare-and-set fails, it re-reads and finds the content stored.
    assert store.current_pass(stale, card) is False
    assert stale.apple_update_tag == issued.apple_update_tag


def test_a_refresh_of_an_unchanged_card_is_a_few_queries(
    client, issued, card, django_assert_max_num_queries
):
    # Every refresh builds the pass to compare it with the stored one; that costs CPU
    # (bench/bench_pass_refresh.py), not queries.
    with django_assert_max_num_queries(2):
        assert client.get(pass_url(issued), **auth(issued)).status_code == 200
    with django_assert_max_num_queries(2):
        download = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    assert download.status_code == 200
