"""What the job pages say: honest outcomes, the segmented bar, named jobs, the job page's
poll, dashboard filters, members' 403 pages and the result messages after actions."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from bulkjobs.web import dashboard
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards, make_email_job, make_user
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem

from .conftest import fail_items

DASHBOARD = reverse("bulkjobs:dashboard")
JSON = reverse("bulkjobs:jobs_json")


def detail(job, kind="email"):
    return reverse("bulkjobs:job_detail", args=[kind, job.pk])


def job_json(job, kind="email"):
    return reverse("bulkjobs:job_json", args=[kind, job.pk])


def make_wallet_job(company, cards, user, **state):
    job = BulkWalletApiJob.objects.create(
        company=company, created_by=user, total_items=len(cards), **state
    )
    BulkWalletApiJobItem.objects.bulk_create(
        BulkWalletApiJobItem(job=job, card=card) for card in cards
    )
    return job


def row_of(client, job, kind="email"):
    data = client.get(JSON).json()
    section = next(s for s in data["kinds"] if s["name"] == kind)
    return next(row for row in section["jobs"] if row["id"] == job.pk)


# --- outcomes and the segmented bar ---------------------------------------------------


def test_outcomes_tell_what_happened(admin_client_, company, owner):
    clean = fail_items(make_email_job(company, cards=make_cards(company, 3), created_by=owner), 0)
    partial = fail_items(
        make_email_job(company, cards=make_cards(company, 3, "B"), created_by=owner), 2
    )
    failed = fail_items(
        make_email_job(company, cards=make_cards(company, 2, "C"), created_by=owner), 2
    )
    cancelled = make_email_job(company, cards=make_cards(company, 5, "D"), created_by=owner)
    BulkEmailJob.objects.filter(pk=cancelled.pk).update(
        status=Status.CANCELLED, succeeded_items=2, cancelled_items=3
    )
    labels = {
        job.pk: (row_of(admin_client_, job)["status_label"], row_of(admin_client_, job)["badge"])
        for job in (clean, partial, failed, cancelled)
    }
    assert labels[clean.pk] == ("Completed", "completed")
    assert labels[partial.pk] == ("Completed with 2 failed", "partial")
    assert labels[failed.pk] == ("Failed", "failed")
    assert labels[cancelled.pk] == ("Cancelled after 2 sent", "cancelled")
    # Four outcomes, four badges: a job with failures never looks like a clean one.
    assert len({badge for _label, badge in labels.values()}) == 4
    # A cancelled job is not "100%": only the items worked on count.
    assert row_of(admin_client_, cancelled)["percent"] == 40


def test_cancelled_wallet_job_says_synced(admin_client_, company, owner):
    job = make_wallet_job(
        company,
        make_cards(company, 4),
        owner,
        status=Status.CANCELLED,
        succeeded_items=1,
        cancelled_items=3,
    )
    assert row_of(admin_client_, job, "wallet")["status_label"] == "Cancelled after 1 synced"


def test_segments_add_up_and_have_a_text_equivalent(admin_client_, company, owner):
    job = make_email_job(company, cards=make_cards(company, 10), created_by=owner)
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, succeeded_items=5, failed_items=2, cancelled_items=1
    )
    row = row_of(admin_client_, job)
    segments = {s["name"]: s for s in row["segments"]}
    assert [s["name"] for s in row["segments"]] == [
        "succeeded",
        "failed",
        "cancelled",
        "remaining",
    ]
    assert [segments[n]["width"] for n in segments] == [50, 20, 10, 20]
    assert [segments[n]["x"] for n in segments] == [0, 50, 70, 80]
    assert row["segments_text"] == "5 sent, 2 failed, 1 cancelled, 2 not yet sent (of 10 emails)"
    # The same bar and legend on the dashboard row and on the job page.
    for html in (row["html"], admin_client_.get(detail(job)).content.decode()):
        assert 'class="seg seg-failed" data-seg="failed" x="50" width="20"' in html
        assert f'aria-valuetext="{row["segments_text"]}"' in html
        assert '<span class="swatch seg-failed"></span>2 failed</li>' in html
        assert "style=" not in html.split("<main")[-1]


# --- every job identified -------------------------------------------------------------


def test_rows_name_kind_subject_size_and_creator(admin_client_, company, owner):
    owner.first_name, owner.last_name = "Olga", "Owner"
    owner.save()
    job = make_email_job(
        company, cards=make_cards(company, 142), created_by=owner, subject="Trade fair follow-up"
    )
    row = row_of(admin_client_, job)
    assert (row["title"], row["size"], row["created_by"]) == (
        "Trade fair follow-up",
        "142 emails",
        "Olga Owner",
    )
    assert row["cancel_question"] == (
        f"Cancel email job #{job.pk}, 'Trade fair follow-up': 142 emails not yet sent?"
    )
    assert 'data-question="Cancel email job #' in row["html"]


def test_wallet_jobs_are_named_by_their_cards(admin_client_, company, owner):
    cards = make_cards(company, 6)
    several = make_wallet_job(company, cards, owner)
    one = make_wallet_job(company, cards[2:3], owner)
    assert row_of(admin_client_, several, "wallet")["title"] == "Person 1 and 5 other cards"
    assert row_of(admin_client_, one, "wallet")["title"] == "Person 3"
    assert row_of(admin_client_, several, "wallet")["cancel_question"] == (
        f"Cancel wallet sync job #{several.pk}, 'Person 1 and 5 other cards': "
        "6 cards not yet synced?"
    )
    page = admin_client_.get(detail(several, "wallet")).content.decode()
    assert "Wallet sync job #" in page and "Person 1 and 5 other cards" in page


@pytest.mark.parametrize("count", [3, 40])
def test_item_table_names_card_holders_without_a_query_per_item(
    count, admin_client_, company, owner, django_assert_max_num_queries
):
    job = make_email_job(company, cards=make_cards(company, count), created_by=owner)
    make_wallet_job(company, make_cards(company, count, "W"), owner)
    wallet_job = BulkWalletApiJob.objects.get()
    # session, user, membership, job, item counts, item page (with its cards); for an
    # active job its queue: the processor runs and the activity rows (its schedule), the
    # company's active jobs in turn order and its pace bucket (bulkjobs.web.queue).
    with django_assert_max_num_queries(6 + 4):
        page = admin_client_.get(detail(job)).content.decode()
    assert '<td data-label="Card">Person 1</td>' in page
    with django_assert_max_num_queries(6 + 4):
        page = admin_client_.get(detail(wallet_job, "wallet")).content.decode()
    assert '<td data-label="Card">W 1</td>' in page and "Card id" not in page


# --- the job page's poll --------------------------------------------------------------


def test_job_json_gives_the_parts_and_answers_304_when_unchanged(
    admin_client_, job, django_assert_max_num_queries
):
    response = admin_client_.get(job_json(job))
    assert "private" in response["Cache-Control"]
    data = response.json()
    assert set(data["parts"]) == {"head", "summary", "items"}
    assert data["job"]["finished"] is False and data["job"]["status_label"] == "Pending"
    assert 'class="filters"' in data["parts"]["items"]
    assert "Cancel job" in data["parts"]["head"]
    etag = response["ETag"]
    # Unchanged: the job's own row and its company's queue (one aggregate of the active
    # jobs), nothing about its items.
    with django_assert_max_num_queries(4 + 1):
        assert admin_client_.get(job_json(job), headers={"if-none-match": etag}).status_code == 304
    BulkEmailJobItem.objects.filter(job=job).update(status=Status.COMPLETED)
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.COMPLETED, succeeded_items=3, finished_at=timezone.now()
    )
    response = admin_client_.get(job_json(job), headers={"if-none-match": etag})
    assert response.status_code == 200
    data = response.json()
    assert data["job"]["finished"] is True and data["job"]["status_label"] == "Completed"
    assert "Cancel job" not in data["parts"]["head"]
    assert (
        'data-filter="completed">Completed <span class="count">3</span>' in (data["parts"]["items"])
    )


def test_job_json_is_scoped_to_the_company(outsider_client, job):
    assert outsider_client.get(job_json(job)).status_code == 404


def test_job_page_polls_its_json_until_finished(admin_client_, job):
    page = admin_client_.get(detail(job)).content.decode()
    assert f'data-poll-url="{job_json(job)}"' in page and 'data-finished="false"' in page
    fail_items(job, 0)
    assert 'data-finished="true"' in admin_client_.get(detail(job)).content.decode()


# --- dashboard filters ----------------------------------------------------------------


@pytest.fixture
def varied_jobs(company, owner):
    other = make_user("olaf", company, role="admin")
    cards = make_cards(company, 2)
    jobs = {
        "done": fail_items(
            make_email_job(company, cards=cards, created_by=owner, subject="Done"), 0
        ),
        "failed": fail_items(
            make_email_job(company, cards=cards, created_by=owner, subject="Broken"), 2
        ),
        "olaf": make_email_job(company, cards=cards, created_by=other, subject="By Olaf"),
        "old": make_email_job(
            company,
            cards=cards,
            created_by=owner,
            subject="Old",
            created_at=timezone.now() - timedelta(days=40),
        ),
        "wallet": make_wallet_job(company, cards, owner),
    }
    return jobs, other


def titles(page):
    return [row["title"] for s in page.json()["kinds"] for row in s["jobs"]]


def test_filters_by_status_kind_creator_and_dates(admin_client_, varied_jobs):
    jobs, olaf = varied_jobs
    assert titles(admin_client_.get(JSON, {"status": "failed"})) == ["Broken"]
    assert titles(admin_client_.get(JSON, {"created_by": olaf.pk})) == ["By Olaf"]
    by_kind = admin_client_.get(JSON, {"kind": "wallet"}).json()
    assert [s["name"] for s in by_kind["kinds"]] == ["wallet"]
    today = timezone.localdate()
    recent = titles(
        admin_client_.get(JSON, {"kind": "email", "created_from": today - timedelta(days=1)})
    )
    assert "Old" not in recent and "Done" in recent
    old = titles(
        admin_client_.get(
            JSON, {"kind": "email", "created_to": (today - timedelta(days=30)).isoformat()}
        )
    )
    assert old == ["Old"]
    page = admin_client_.get(DASHBOARD, {"status": "failed", "kind": "email"}).content.decode()
    assert "Broken" in page and "Done" not in page and "(1 matching)" in page


def test_filtered_pages_keep_the_filters(admin_client_, company, owner):
    cards = make_cards(company, 1)
    for n in range(dashboard.JOBS_PER_PAGE + 1):
        fail_items(make_email_job(company, cards=cards, created_by=owner, subject=f"Failed {n}"), 1)
    make_email_job(company, cards=cards, created_by=owner, subject="Pending one")
    page = admin_client_.get(DASHBOARD, {"status": "failed"}).content.decode()
    assert 'href="?status=failed&amp;email-page=2" rel="next">Older</a>' in page
    second = admin_client_.get(DASHBOARD, {"status": "failed", "email-page": 2}).content.decode()
    assert "Failed 0" in second and "Pending one" not in second


@pytest.mark.parametrize(
    "params, message",
    [
        ({"status": "exploded"}, "Status: Select a valid choice."),
        ({"kind": "fax"}, "Kind: Select a valid choice."),
        ({"created_from": "yesterday"}, "Created from: Enter a valid date."),
        ({"created_by": "999999"}, "Created by: Select a valid choice."),
        ({"created_from": "2026-02-01", "created_to": "2026-01-01"}, "end date is before"),
    ],
)
def test_invalid_filters_say_what_is_wrong(admin_client_, job, params, message):
    response = admin_client_.get(DASHBOARD, params)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'role="alert"' in page and message in page
    # The rest of the page still works: the job is listed, unfiltered.
    assert f'data-job="{job.pk}"' in page
    poll = admin_client_.get(JSON, params)
    assert poll.status_code == 400 and any(message in e for e in poll.json()["errors"])


def test_creator_filter_offers_only_the_companys_people(admin_client_, job, outsider):
    page = admin_client_.get(DASHBOARD).content.decode()
    assert ">owner</option>" in page and "outsider" not in page
    assert admin_client_.get(JSON, {"created_by": outsider.pk}).status_code == 400


# --- members ----------------------------------------------------------------------------


def test_member_gets_a_styled_403_naming_the_admins(member_client, owner, job):
    owner.first_name, owner.last_name = "Olga", "Owner"
    owner.save()
    response = member_client.get(reverse("emails:send"))
    assert response.status_code == 403
    page = response.content.decode()
    assert '<link rel="stylesheet" href="/static/css/app.css">' in page
    assert "This is for company admins" in page
    assert "Olga Owner" in page and "As a member of Acme" in page
    cancel = member_client.get(reverse("bulkjobs:cancel", args=["email", job.pk]))
    assert cancel.status_code == 403 and "Olga Owner" in cancel.content.decode()


def test_members_are_not_offered_what_they_cannot_use(member_client, admin_client_, job):
    fail_items(job, 1)
    for client, offered in ((member_client, False), (admin_client_, True)):
        for url in (DASHBOARD, detail(job)):
            page = client.get(url).content.decode()
            assert (reverse("emails:send") in page) is offered
            assert (reverse("wallet:sync") in page) is offered
            assert (reverse("bulkjobs:retry", args=["email", job.pk]) in page) is offered


# --- messages after actions ---------------------------------------------------------------


def test_action_results_are_shown_and_announced(admin_client_, job):
    response = admin_client_.post(
        reverse("bulkjobs:cancel", args=["email", job.pk]), {"next": detail(job)}, follow=True
    )
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == detail(job)
    assert '<li class="message success" role="status">Email job #' in page
    again = admin_client_.post(
        reverse("bulkjobs:retry", args=["email", job.pk]), {"next": detail(job)}, follow=True
    )
    # A refusal is an error, announced at once (role=alert).
    assert '<li class="message error" role="alert">' in again.content.decode()


def test_the_kind_nouns_are_set_for_every_kind():
    for name in ("email", "wallet"):
        kind = get_kind(name)
        assert kind.job_noun != "job" and kind.item_noun_plural != "items"
