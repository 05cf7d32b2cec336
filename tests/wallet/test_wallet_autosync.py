"""Wallet updates without a bulk job: saving a card (app, admin) queues it in the
company's automatic job, coalesced; deleting one voids its pass and expires its Google
object. End to end against the loopback APNs (HTTP/2) and Google servers."""

import contextlib

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from bulkjobs.web.jobcounts import recount_jobs
from cards.models import BusinessCard, Company
from tests.conftest import make_cards
from tests.wallet.conftest import issue_first_pass, verify_pkpass
from tests.wallet.test_apple_web_service import auth, pass_url
from tests.wallet.test_wallet_jobs import register_device
from wallet.google.payload import object_id_for
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem, CardWalletState, PlatformResult

TOKEN = "ab" * 32


def run():
    return run_once(get_kind("wallet"))


def automatic_items(company):
    return list(
        BulkWalletApiJobItem.objects.filter(job__company=company, job__automatic=True).order_by(
            "id"
        )
    )


def edit(card, title, capture):
    with capture(execute=True):
        card.job_title = title
        card.save()


def test_several_edits_before_a_run_give_one_item(
    apple, issued, card, django_capture_on_commit_callbacks
):
    for title in ("One", "Two", "Three"):
        edit(card, title, django_capture_on_commit_callbacks)
    (item,) = automatic_items(card.company)
    assert item.card == card and item.status == Status.PENDING
    job = BulkWalletApiJob.objects.get(pk=item.job_id)
    assert job.automatic and job.total_items == 1 and job.created_by is None


def test_an_edit_after_the_job_was_claimed_goes_into_a_new_job(
    apns_server, issued, card, django_capture_on_commit_callbacks
):
    edit(card, "One", django_capture_on_commit_callbacks)
    run()
    edit(card, "Two", django_capture_on_commit_callbacks)
    jobs = BulkWalletApiJob.objects.filter(automatic=True).order_by("id")
    assert [job.status for job in jobs] == [Status.COMPLETED, Status.PENDING]


def test_a_card_nobody_added_is_not_queued_when_only_apple_is_configured(
    apple, card, django_capture_on_commit_callbacks
):
    edit(card, "Never issued", django_capture_on_commit_callbacks)
    assert automatic_items(card.company) == []


def test_nothing_is_queued_when_no_platform_is_configured(
    settings, card, django_capture_on_commit_callbacks
):
    settings.APPLE_PASS_TYPE_ID = ""
    edit(card, "No wallets", django_capture_on_commit_callbacks)
    assert automatic_items(card.company) == []


def test_with_google_every_saved_card_is_queued(google, card, django_capture_on_commit_callbacks):
    # The save link needs the object, so even a card nobody added yet gets one.
    edit(card, "New", django_capture_on_commit_callbacks)
    assert [item.card for item in automatic_items(card.company)] == [card]
    run()
    object_id = object_id_for(card)
    assert object_id in google.objects


def test_a_save_in_the_django_admin_queues_the_card(
    admin_client, apple, issued, card, django_capture_on_commit_callbacks
):
    url = reverse("admin:cards_businesscard_change", args=[card.pk])
    data = {
        "company": card.company_id,
        "full_name": card.full_name,
        "job_title": "Edited in the admin",
        "email": card.email,
        "phone": card.phone,
        "mobile": card.mobile,
        "website": card.website,
        "address": card.address,
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert [item.card for item in automatic_items(card.company)] == [card]


def test_edits_reach_devices_and_google_in_the_next_run(
    client, apns_server, google, card, chain_files, tmp_path, django_capture_on_commit_callbacks
):
    register_device(card, TOKEN)
    edit(card, "Before", django_capture_on_commit_callbacks)
    run()  # the first sync creates the Google object
    apns_server.requests.clear()

    edit(card, "Chief Engineer", django_capture_on_commit_callbacks)
    edit(card, "Chief Analytical Engineer", django_capture_on_commit_callbacks)
    summary = run()

    assert summary.items_succeeded == 1
    item = automatic_items(card.company)[-1]
    assert (item.apple_result, item.google_result) == (PlatformResult.SYNCED,) * 2
    assert [request.token for request in apns_server.requests] == [TOKEN]  # one push
    stored = google.objects[object_id_for(card)]
    assert stored["subheader"]["defaultValue"]["value"] == "Chief Analytical Engineer"
    # What the device then fetches is the new pass.
    state = CardWalletState.objects.get(card=card)
    response = client.get(pass_url(state), **auth(state))
    fields = verify_pkpass(response.content, chain_files, tmp_path)["pass.json"]["generic"]
    titles = [f["value"] for f in fields["secondaryFields"] if f["key"] == "title"]
    assert titles == ["Chief Analytical Engineer"]


def test_deleting_a_card_voids_its_pass_and_expires_its_google_object(
    client, apns_server, google, card, chain_files, tmp_path, django_capture_on_commit_callbacks
):
    register_device(card, TOKEN)
    edit(card, "Synced", django_capture_on_commit_callbacks)
    run()
    object_id = object_id_for(card)
    assert google.objects[object_id]["state"] == "ACTIVE"
    apns_server.requests.clear()
    state = CardWalletState.objects.get(card=card)

    with django_capture_on_commit_callbacks(execute=True):
        card.delete()

    # Stored before the row went: the web service serves the voided pass, not 401.
    response = client.get(pass_url(state), **auth(state))
    assert response.status_code == 200
    voided = verify_pkpass(response.content, chain_files, tmp_path)["pass.json"]
    assert voided["voided"] is True and "barcodes" not in voided
    state.refresh_from_db()
    assert state.card is None and state.voided_at is not None

    summary = run()
    assert summary.items_succeeded == 1
    (item,) = [i for i in automatic_items(state_company(state)) if i.voided_state_id]
    assert (item.apple_result, item.google_result) == (PlatformResult.SYNCED,) * 2
    assert [request.token for request in apns_server.requests] == [TOKEN]
    assert google.objects[object_id]["state"] == "EXPIRED"
    assert google.calls("PATCH", "genericObject")[-1] == ("PATCH", f"genericObject/{object_id}")
    # Still served after the run, as long as devices ask.
    assert client.get(pass_url(state), **auth(state)).content == response.content


def state_company(state):
    item = BulkWalletApiJobItem.objects.filter(voided_state=state).select_related("job").get()
    return item.job.company


def test_deleting_cards_with_a_queryset_queues_one_item_each(
    apple, company, django_capture_on_commit_callbacks
):
    cards = make_cards(company, 3)
    for card in cards:
        register_device(card, TOKEN, device=f"device-{card.pk}")
    with django_capture_on_commit_callbacks(execute=True):
        BusinessCard.objects.filter(company=company).delete()
    items = automatic_items(company)
    assert len(items) == 3 and all(item.voided_state_id for item in items)
    assert CardWalletState.objects.filter(voided_at__isnull=False).count() == 3


def test_deleting_a_company_deletes_its_cards_without_queueing(
    apple, issued, company, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        Company.objects.filter(pk=company.pk).delete()
    assert not BulkWalletApiJob.objects.exists()
    # Devices that still hold the pass get the voided one.
    issued.refresh_from_db()
    assert issued.card is None and issued.voided_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_committed_save_queues_without_capturing(apple, company):
    card = make_cards(company, 1)[0]
    register_device(card, TOKEN)
    card.job_title = "Committed"
    card.save()
    assert [item.card_id for item in automatic_items(company)] == [card.pk]


def test_a_pending_item_of_a_deleted_card_voids_instead_of_failing(
    apns_server, card, django_capture_on_commit_callbacks
):
    register_device(card, TOKEN)
    edit(card, "Queued", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        card.delete()
    (item,) = automatic_items(card.company)  # the queued edit became the void item
    run()
    item.refresh_from_db()
    assert item.status == Status.COMPLETED and item.apple_result == PlatformResult.SYNCED
    assert [request.token for request in apns_server.requests] == [TOKEN]


def test_renaming_a_company_queues_its_issued_cards(
    apple, issued, company, django_capture_on_commit_callbacks
):
    make_cards(company, 2)  # never added to a wallet: nothing to update
    with django_capture_on_commit_callbacks(execute=True):
        company.save()  # unchanged: nothing queued
    assert automatic_items(company) == []
    with django_capture_on_commit_callbacks(execute=True):
        company.name = "Acme Analytical"
        company.save()
    assert [item.card_id for item in automatic_items(company)] == [issued.card_id]


def issue(cards):
    """Issue each card's pass (as its first download does); their states' ids."""
    states = [CardWalletState.objects.for_card(card) for card in cards]
    for state in states:
        issue_first_pass(state)
    return sorted(state.pk for state in states)


def queueing_queries(capture, change):
    """Make `change` (in the test's transaction), then run its commit callbacks: the
    queries those cost. Queueing runs in a transaction of its own; inside the test's
    transaction that is a savepoint, whose two statements are counted too."""
    with capture() as callbacks:
        change()
    with CaptureQueriesContext(connection) as captured:
        for callback in callbacks:
            callback()
    return len(captured)


def voided_items(company):
    return sorted(item.voided_state_id for item in automatic_items(company))


def count_jobs_of(*companies):
    """A company's first job ever also counts its jobs once (bulkjobs.web.jobcounts); done
    here, so that the queries counted are those of every later commit."""
    for company in companies:
        recount_jobs(get_kind("wallet"), company.pk)


def test_deleting_many_cards_queues_them_with_a_fixed_number_of_queries(
    apple, company, other_company, django_capture_on_commit_callbacks
):
    few = issue(make_cards(company, 2))
    many = issue(make_cards(other_company, 12, prefix="Other"))
    count_jobs_of(company, other_company)

    def delete_cards_of(owner):
        return lambda: BusinessCard.objects.filter(company=owner).delete()

    # The lock, the new job, its company's job count, the items; and the savepoint.
    queries = [
        queueing_queries(django_capture_on_commit_callbacks, delete_cards_of(owner))
        for owner in (company, other_company)
    ]
    assert queries[0] == queries[1] <= 4 + 2
    assert (voided_items(company), voided_items(other_company)) == (few, many)


def test_saving_many_cards_in_one_transaction_queues_them_with_a_fixed_number_of_queries(
    apple, company, other_company, django_capture_on_commit_callbacks
):
    few, many = make_cards(company, 3), make_cards(other_company, 13, prefix="Other")
    # Only cards someone added to Apple Wallet have a pass to update.
    issue(few[:2] + many[:12])
    count_jobs_of(company, other_company)

    def edit_all(cards):
        def change():
            with transaction.atomic():
                for card in cards:
                    card.job_title = "Edited"
                    card.save()

        return change

    # Which cards have a pass (one query), the lock, the new job, its company's job
    # count, the items; and the savepoint.
    queries = [
        queueing_queries(django_capture_on_commit_callbacks, edit_all(cards))
        for cards in (few, many)
    ]
    assert queries[0] == queries[1] <= 5 + 2
    for owner, cards in ((company, few[:2]), (other_company, many[:12])):
        assert [item.card_id for item in automatic_items(owner)] == [c.pk for c in cards]
    # Saved again: already waiting, so only the lock and the check of what waits.
    again = queueing_queries(django_capture_on_commit_callbacks, edit_all(many))
    assert again <= 3 + 2
    assert len(automatic_items(other_company)) == 12


def test_the_admins_delete_action_queues_the_selected_cards_in_one_job(
    admin_client, apple, company, django_capture_on_commit_callbacks
):
    cards = make_cards(company, 4)
    state_ids = issue(cards)
    data = {"action": "delete_selected", "post": "yes", "_selected_action": [c.pk for c in cards]}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:cards_businesscard_changelist"), data)
    assert response.status_code == 302
    assert not BusinessCard.objects.exists()
    (job,) = BulkWalletApiJob.objects.filter(automatic=True)
    assert job.total_items == 4 and voided_items(company) == state_ids


def test_a_single_save_costs_a_few_queries(apple, company, django_capture_on_commit_callbacks):
    first, second = make_cards(company, 2)
    issue([first, second])
    count_jobs_of(company)
    capture = django_capture_on_commit_callbacks
    # Which of the cards has a pass, the lock, the new job, its company's job count, the
    # item; and the savepoint.
    assert queueing_queries(capture, first.save) <= 5 + 2
    # Which has a pass, the lock (which also tells that the job holds none of them), the
    # item, the job's total.
    assert queueing_queries(capture, second.save) <= 4 + 2
    # Waiting already: which has a pass, the lock, which of them wait.
    assert queueing_queries(capture, second.save) <= 3 + 2
    assert [item.card_id for item in automatic_items(company)] == [first.pk, second.pk]


def test_one_transaction_over_several_companies_queues_each_company_its_own_cards(
    apple, company, other_company, django_capture_on_commit_callbacks
):
    ours = issue(make_cards(company, 2))
    theirs = issue(make_cards(other_company, 3, prefix="Other"))
    with django_capture_on_commit_callbacks(execute=True):
        BusinessCard.objects.all().delete()
    assert (voided_items(company), voided_items(other_company)) == (ours, theirs)
    jobs = BulkWalletApiJob.objects.filter(automatic=True)
    assert {job.company_id: job.total_items for job in jobs} == {
        company.pk: 2,
        other_company.pk: 3,
    }


def test_changes_rolled_back_to_a_savepoint_are_not_queued(
    apple, company, django_capture_on_commit_callbacks
):
    kept, dropped, undeleted = make_cards(company, 3)
    issue([kept, dropped, undeleted])
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        kept.save()
        with contextlib.suppress(RuntimeError), transaction.atomic():
            dropped.save()
            undeleted.delete()
            raise RuntimeError("rolled back")
    assert [(item.card_id, item.voided_state_id) for item in automatic_items(company)] == [
        (kept.pk, None)
    ]
    assert BusinessCard.objects.filter(full_name=undeleted.full_name).exists()


def test_a_card_saved_and_deleted_in_one_transaction_is_queued_once_as_deleted(
    apple, company, django_capture_on_commit_callbacks
):
    card = make_cards(company, 1)[0]
    [state_id] = issue([card])
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        card.save()
        card.delete()
    assert [(item.card_id, item.voided_state_id) for item in automatic_items(company)] == [
        (None, state_id)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_committed_bulk_delete_queues_its_cards_in_one_job(apple, company):
    state_ids = issue(make_cards(company, 3))
    BusinessCard.objects.filter(company=company).delete()
    (job,) = BulkWalletApiJob.objects.filter(automatic=True)
    assert job.total_items == 3 and voided_items(company) == state_ids
