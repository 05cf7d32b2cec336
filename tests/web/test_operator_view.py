"""The platform operators' /background-jobs/: every company's jobs, a company filter,
each company's queue health, links to the admin, the same cheap live poll; and company
users, who keep seeing only their own company whatever they put in the query string."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bulkjobs.models import Status
from bulkjobs.web.dashboard import JOBS_PER_PAGE
from cards.models import Company, Membership
from emails.models import BulkEmailJob
from tests.conftest import make_cards, make_email_job, make_user

from .conftest import client_for

JSON = reverse("bulkjobs:jobs_json")
DASHBOARD = reverse("bulkjobs:dashboard")


@pytest.fixture
def operator(db):
    """A platform operator: staff, in no company."""
    return get_user_model().objects.create_user("operator", password="pw-operator", is_staff=True)


@pytest.fixture
def operator_client(operator):
    return client_for(operator)


def job_ids(data):
    return sorted(row["id"] for kind in data["kinds"] for row in kind["jobs"])


def email_rows(data):
    return next(kind for kind in data["kinds"] if kind["name"] == "email")["jobs"]


# --- operators see every company -------------------------------------------------------


def test_an_operator_sees_every_companys_jobs_with_their_company(
    operator_client, company, job, other_company, other_job
):
    data = operator_client.get(JSON).json()
    assert job_ids(data) == sorted([job.pk, other_job.pk])
    rows = {row["id"]: row for row in email_rows(data)}
    assert rows[job.pk]["company"]["name"] == "Acme"
    assert rows[other_job.pk]["company"]["name"] == "Globex"
    assert rows[job.pk]["urls"]["admin"] == reverse(
        "admin:emails_bulkemailjob_change", args=[job.pk]
    )
    assert rows[other_job.pk]["company"]["admin_url"] == reverse(
        "admin:cards_company_change", args=[other_company.pk]
    )
    page = operator_client.get(DASHBOARD).content.decode()
    assert f'data-job="{job.pk}"' in page and f'data-job="{other_job.pk}"' in page
    assert "All companies (operator view)" in page
    assert 'data-col="company"' in page
    assert reverse("admin:emails_bulkemailjob_change", args=[other_job.pk]) in page
    # Read-only: no cancel or retry buttons for anyone's jobs.
    assert "js-cancel" not in page


def test_the_overview_says_who_paused_a_job(operator_client, other_company, other_job):
    from bulkjobs.ops.services import Actor, pause_job

    anna = make_user("anna", other_company, Membership.Role.ADMIN, first_name="Anna")
    pause_job(other_job, by=Actor.person(anna))
    [row] = [
        row for row in email_rows(operator_client.get(JSON).json()) if row["id"] == other_job.pk
    ]
    assert (row["status_label"], row["badge"]) == ("Paused", "paused")
    assert row["last_action"].startswith("Paused by Anna at ")


def test_the_overview_says_which_time_zone_its_times_are_in(
    operator_client, settings, company, job
):
    Company.objects.filter(pk=company.pk).update(time_zone="Europe/Berlin")
    page = operator_client.get(DASHBOARD).content.decode()
    # The operator's own zone (settings.TIME_ZONE for an operator in no company), named.
    assert f"Times are in your time zone, {settings.TIME_ZONE}, not in each company" in page


def test_the_company_filter_narrows_the_overview_to_one_company(
    operator_client, company, job, other_company, other_job
):
    data = operator_client.get(JSON, {"company": other_company.pk}).json()
    assert job_ids(data) == [other_job.pk]
    page = operator_client.get(DASHBOARD, {"company": other_company.pk}).content.decode()
    assert f'data-job="{other_job.pk}"' in page and f'data-job="{job.pk}"' not in page
    # An unknown company is a filter error, said as such (never a 500, never "all").
    assert operator_client.get(JSON, {"company": 999999}).status_code == 400
    assert operator_client.get(DASHBOARD, {"company": 999999}).status_code == 400


def test_an_operator_reads_any_companys_job_page_read_only(
    operator_client, other_company, other_job, django_assert_max_num_queries
):
    detail = reverse("bulkjobs:job_detail", args=["email", other_job.pk])
    page = operator_client.get(detail).content.decode()
    assert "A job of Globex, shown read-only to platform operators" in page
    assert reverse("admin:emails_bulkemailjob_change", args=[other_job.pk]) in page
    assert reverse("admin:cards_company_change", args=[other_company.pk]) in page
    assert "js-cancel" not in page
    job_json = reverse("bulkjobs:job_json", args=["email", other_job.pk])
    # As a company user's poll: session, user, membership, the job (its company joined),
    # its company's queue (fingerprint), its item counts and page of items; and, the job
    # waiting, what it waits for (bulkjobs.web.queue): the runs, the activity, the
    # company's active jobs, the rate buckets.
    with django_assert_max_num_queries(11):
        response = operator_client.get(job_json)
    assert response.status_code == 200 and response.json()["job"]["id"] == other_job.pk
    # Unchanged: session, user, membership, the job, its company's queue fingerprint.
    with django_assert_max_num_queries(5):
        assert (
            operator_client.get(job_json, headers={"if-none-match": response["ETag"]}).status_code
            == 304
        )
    csv = operator_client.get(reverse("bulkjobs:job_items_csv", args=["email", other_job.pk]))
    assert csv.status_code == 200


def test_an_operator_cannot_act_on_a_companys_job_from_the_app(
    operator, company, job, other_company, other_job
):
    """Actions stay company-scoped: staff status lets one read, the admin is for acting."""
    staff_admin = make_user("staff-admin", company, Membership.Role.ADMIN, is_staff=True)
    for user in (operator, staff_admin):
        client = client_for(user)
        response = client.post(reverse("bulkjobs:cancel", args=["email", other_job.pk]))
        assert response.status_code == 404
    other_job.refresh_from_db()
    assert other_job.status == Status.PENDING


def test_an_operator_in_a_company_sees_it_first_and_the_overview_on_asking(
    company, job, other_company, other_job
):
    staff_member = make_user("staff-member", company, Membership.Role.ADMIN, is_staff=True)
    client = client_for(staff_member)
    assert job_ids(client.get(JSON).json()) == [job.pk]
    page = client.get(DASHBOARD).content.decode()
    assert f'href="{DASHBOARD}?view=all"' in page
    overview = client.get(JSON, {"view": "all"}).json()
    assert job_ids(overview) == sorted([job.pk, other_job.pk])
    page = client.get(DASHBOARD, {"view": "all"}).content.decode()
    assert "Back to Acme's jobs" in page
    # The filter form and the page links keep the overview.
    assert '<input type="hidden" name="view" value="all">' in page
    # Their own company's job keeps its actions on its page.
    own = client.get(reverse("bulkjobs:job_detail", args=["email", job.pk])).content.decode()
    assert "js-cancel" in own and "shown read-only" not in own


def test_a_deactivated_staff_user_is_not_an_operator(company, job, other_job):
    user = make_user("gone", company, is_staff=True)
    client = client_for(user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    # Signed out by Django's ModelBackend: never the overview.
    assert client.get(JSON, {"view": "all"}).status_code == 302


# --- company users stay in their company --------------------------------------------------


@pytest.mark.parametrize(
    "params", [{"view": "all"}, {"company": "other"}, {"view": "all", "company": "other"}]
)
def test_company_users_never_see_another_company_through_the_new_params(
    params, admin_client_, member_client, company, job, other_company, other_job
):
    query = {k: (other_company.pk if v == "other" else v) for k, v in params.items()}
    for client in (admin_client_, member_client):
        response = client.get(JSON, query)
        # The very answer they get without the parameters: nothing of them is read.
        assert response["ETag"] == client.get(JSON)["ETag"]
        data = response.json()
        assert job_ids(data) == [job.pk]
        assert "company" not in email_rows(data)[0]
        assert "queue_health" not in data
        page = client.get(DASHBOARD, query).content.decode()
        assert f'data-job="{other_job.pk}"' not in page and "Globex" not in page
        assert "Queue health" not in page and "All companies" not in page


def test_company_users_job_pages_of_other_companies_stay_404_with_the_new_params(
    outsider_client, job
):
    for name in ("bulkjobs:job_detail", "bulkjobs:job_json", "bulkjobs:job_items_csv"):
        path = reverse(name, args=["email", job.pk])
        assert outsider_client.get(path, {"view": "all"}).status_code == 404


def test_users_in_no_company_still_get_404_for_the_overview(company, job):
    loner = get_user_model().objects.create_user("loner", password="x")
    assert client_for(loner).get(DASHBOARD, {"view": "all"}).status_code == 404
    assert client_for(loner).get(JSON, {"view": "all"}).status_code == 404


# --- queue health -------------------------------------------------------------------------


def test_queue_health_per_company(operator_client, company, other_company):
    now = timezone.now()
    waiting = make_email_job(company, 2, created_at=now - timedelta(minutes=30))
    make_email_job(company, 2, created_at=now - timedelta(minutes=10))
    running = make_email_job(
        other_company,
        3,
        status=Status.PROCESSING,
        started_at=now - timedelta(minutes=5),
        last_processed_at=now - timedelta(minutes=1),
        succeeded_items=1,
    )
    make_email_job(
        other_company,
        2,
        status=Status.PROCESSING,
        paused_at=now - timedelta(minutes=2),
        reason="Paused: the mail server refused the login",
    )
    make_email_job(other_company, 2, status=Status.COMPLETED)
    page = operator_client.get(DASHBOARD).content.decode()
    assert "Queue health" in page
    response = operator_client.get(JSON)
    html = response.json()["queue_health"]["html"]
    acme = html.split(f'data-company="{company.pk}"')[1].split("</tr>")[0]
    globex = html.split(f'data-company="{other_company.pk}"')[1].split("</tr>")[0]
    assert '<td data-col="active" data-label="Active jobs">2</td>' in acme
    waiting_since = timezone.localtime(waiting.created_at).isoformat()
    assert f'<time datetime="{waiting_since}">' in acme
    assert "about 30 min" in acme
    assert (
        '<td data-col="active" data-label="Active jobs">2</td>' in globex
    )  # the completed job is not in a queue
    assert '<span class="badge badge-paused">1</span>' in globex
    assert 'data-label="Waiting since"><span class="muted">—' in globex
    last = timezone.localtime(running.last_processed_at).strftime("%H:%M:%S")
    assert last in globex
    # The longest waiting company comes first.
    assert html.index(f'data-company="{company.pk}"') < html.index(
        f'data-company="{other_company.pk}"'
    )
    assert reverse("admin:cards_company_change", args=[company.pk]) in html


def test_the_overview_poll_follows_every_companys_changes(
    operator_client, company, job, other_company, other_job
):
    # Frozen for the 304: while jobs wait, the ETag follows the minute.
    with time_machine.travel(timezone.now(), tick=False):
        first = operator_client.get(JSON)
        etag = first["ETag"]
        assert operator_client.get(JSON, headers={"if-none-match": etag}).status_code == 304
    # Another company's job makes progress: the overview sees it.
    BulkEmailJob.objects.filter(pk=other_job.pk).update(
        status=Status.PROCESSING, succeeded_items=1, last_processed_at=timezone.now()
    )
    changed = operator_client.get(JSON, headers={"if-none-match": etag})
    assert changed.status_code == 200
    rows = {row["id"]: row for row in email_rows(changed.json())}
    assert rows[other_job.pk]["succeeded"] == 1
    # A new job of a third company shows up too.
    third = Company.objects.create(name="Initech", slug="initech")
    new = make_email_job(third, 1)
    again = operator_client.get(JSON, headers={"if-none-match": changed["ETag"]})
    assert again.status_code == 200 and new.pk in job_ids(again.json())
    # A job waiting to start: its age moves with the clock, so does the ETag, once a minute.
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        later = operator_client.get(JSON, headers={"if-none-match": again["ETag"]})
    assert later.status_code == 200


def test_the_overview_pages_through_every_companys_jobs_newest_first(
    operator_client, company, other_company
):
    jobs = [
        make_email_job(company if n % 2 else other_company, 1, subject=f"S{n}")
        for n in range(JOBS_PER_PAGE + 3)
    ]
    newest_first = [job.pk for job in reversed(jobs)]
    first = next(k for k in operator_client.get(JSON).json()["kinds"] if k["name"] == "email")
    assert [row["id"] for row in first["jobs"]] == newest_first[:JOBS_PER_PAGE]
    assert first["num_pages"] == 2 and first["count"] == JOBS_PER_PAGE + 3
    second = operator_client.get(JSON, {"email-page": 2}).json()
    assert [row["id"] for row in email_rows(second)] == newest_first[JOBS_PER_PAGE:]


def test_the_overview_etag_sees_what_its_totals_could_hide(operator_client, company, other_company):
    """Totals over every company, yet a change of one company's line changes the ETag."""
    now = timezone.now()
    behind = make_email_job(
        company, 3, status=Status.PROCESSING, last_processed_at=now - timedelta(minutes=5)
    )
    make_email_job(other_company, 3, status=Status.PROCESSING, last_processed_at=now)
    paused = [
        make_email_job(company, 1, status=Status.PROCESSING, paused_at=now - timedelta(minutes=m))
        for m in (1, 2)
    ]

    def etag():
        return operator_client.get(JSON)["ETag"]

    before = etag()
    # Progress of a company whose last progress is not the latest of all.
    BulkEmailJob.objects.filter(pk=behind.pk).update(
        succeeded_items=1, last_processed_at=now - timedelta(minutes=4)
    )
    after_progress = etag()
    assert after_progress != before
    # The older of two pauses ends: the latest paused_at stays the same.
    BulkEmailJob.objects.filter(pk=paused[1].pk).update(paused_at=None)
    assert etag() != after_progress


def test_the_queue_health_lists_the_companies_most_in_need_and_counts_the_rest(
    operator_client, monkeypatch, company, other_company
):
    monkeypatch.setattr("bulkjobs.web.overview.QUEUE_HEALTH_LIMIT", 2)
    now = timezone.now()
    third = Company.objects.create(name="Initech", slug="initech")
    make_email_job(company, 1, status=Status.PROCESSING, paused_at=now)
    make_email_job(other_company, 1, created_at=now - timedelta(minutes=5))
    make_email_job(third, 1, status=Status.PROCESSING)
    html = operator_client.get(JSON).json()["queue_health"]["html"]
    # The waiting company first, then the paused one; the third is counted.
    assert html.index(f'data-company="{other_company.pk}"') < html.index(
        f'data-company="{company.pk}"'
    )
    assert f'data-company="{third.pk}"' not in html
    assert "And 1 more company with active jobs" in html


def test_the_overview_and_a_companys_dashboard_have_different_etags(company, job, other_job):
    staff_member = make_user("staff-member", company, Membership.Role.ADMIN, is_staff=True)
    client = client_for(staff_member)
    own = client.get(JSON)["ETag"]
    assert client.get(JSON, {"view": "all"}, headers={"if-none-match": own}).status_code == 200


# --- cost: no query per company or per row ---------------------------------------------


def busy_companies(count):
    """`count` companies, each with a running job that made progress and a waiting one."""
    now = timezone.now()
    first = Company.objects.count()
    for n in range(first, first + count):
        company = Company.objects.create(name=f"Company {n}", slug=f"company-{n}")
        cards = make_cards(company, 1, prefix=f"C{n}")
        make_email_job(
            company,
            cards=cards,
            status=Status.PROCESSING,
            started_at=now,
            last_processed_at=now,
            succeeded_items=0,
        )
        make_email_job(company, cards=cards)


def test_the_overview_costs_a_fixed_number_of_queries(
    operator_client, django_assert_max_num_queries
):
    # Frozen: while jobs wait, the ETag follows the minute (the health table says how long
    # they have waited), and a minute turning between two polls would make a new answer.
    frozen = time_machine.travel(timezone.now(), tick=False)
    frozen.start()
    try:
        _count_the_overviews_queries(operator_client, django_assert_max_num_queries)
    finally:
        frozen.stop()


def _count_the_overviews_queries(operator_client, django_assert_max_num_queries):
    busy_companies(2)
    operator_client.get(JSON)
    with CaptureQueriesContext(connection) as few:
        operator_client.get(JSON)
    busy_companies(8)
    # session, user, membership, runs, job counts, the active totals; a page per kind
    # with jobs (email only here); the running jobs' activity; the queue health grouped
    # by company and the companies it lists.
    with django_assert_max_num_queries(10):
        response = operator_client.get(JSON)
    assert len(email_rows(response.json())) == 20
    with CaptureQueriesContext(connection) as many:
        operator_client.get(JSON)
    assert len(many.captured_queries) == len(few.captured_queries)
    # Unchanged: the snapshot's two queries after the session's.
    with django_assert_max_num_queries(6):
        assert (
            operator_client.get(JSON, headers={"if-none-match": response["ETag"]}).status_code
            == 304
        )
    # The page: the same, plus the filter form's companies and users.
    with django_assert_max_num_queries(14):
        assert operator_client.get(DASHBOARD).status_code == 200
    narrowed = {"company": Company.objects.first().pk}
    operator_client.get(DASHBOARD, narrowed)  # a company's first look counts its jobs once
    with django_assert_max_num_queries(14):
        assert operator_client.get(DASHBOARD, narrowed).status_code == 200


def test_the_overview_never_counts_every_companys_history(operator_client, company):
    busy_companies(3)
    make_email_job(company, 1, status=Status.COMPLETED)
    operator_client.get(JSON)
    with CaptureQueriesContext(connection) as captured:
        operator_client.get(JSON)
    for sql in (q["sql"] for q in captured.captured_queries):
        if "COUNT(" in sql and "bulk_email_jobs" in sql:
            # Counting is only over active jobs; all jobs are counted by JobCount rows.
            assert "pending" in sql, sql


def test_the_overview_in_german(operator_client, company, job):
    """An operator in no company reads in the browser's language."""
    page = operator_client.get(DASHBOARD, headers={"accept-language": "de"}).content.decode()
    assert "Alle Unternehmen (Betreiberansicht)" in page
    assert "Zustand der Warteschlangen" in page and "Aktive Aufträge" in page
    assert ">Verwaltung<" in page
    english = operator_client.get(JSON, headers={"accept-language": "en"})
    german = operator_client.get(
        JSON, headers={"accept-language": "de", "if-none-match": english["ETag"]}
    )
    # Another language is another answer, not a 304 of the English one.
    assert german.status_code == 200
