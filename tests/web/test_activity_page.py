"""The activity page (charts and summary numbers) and the dashboard's summary: scoped to
the company, accessible without the picture, a fixed number of queries."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from bulkjobs.engine.activity import record_batch_activity
from bulkjobs.models import Status
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

ACTIVITY = reverse("bulkjobs:activity")


def add(company, at, processed, failed=0, kind="email"):
    record_batch_activity(
        company.pk, kind, at, processed=processed, failed=failed, attempts=processed, busy_seconds=1
    )


@pytest.fixture
def history(company, other_company):
    now = timezone.now()
    for hours in range(0, 24 * 30, 5):
        add(company, now - timedelta(hours=hours), 10, 1)
    add(company, now, 4, 0, kind="wallet")
    add(other_company, now, 777_777, 0)


def test_charts_have_titles_descriptions_and_tables(member_client, history):
    page = member_client.get(ACTIVITY).content.decode()
    for title in (
        "Email jobs: items per hour, last 24 hours",
        "Email jobs: items per day, last 30 days",
        "Wallet sync jobs: items per hour, last 24 hours",
    ):
        assert f">{title}</title>" in page
    assert page.count('<svg class="chart"') == 4
    assert page.count('role="img"') == 4
    assert page.count("<desc id=") == 4
    assert page.count('<table class="activity-table">') == 4
    assert "Failed today" in page and "Queued now" in page
    # The CSP allows no inline styles or scripts: colours are SVG attributes.
    main = page.split("<main", 1)[1]
    assert "style=" not in main
    # The one script is the pages' own file (it keeps the summary numbers current).
    assert re.findall(r"<script[^>]*>", main) == ['<script src="/static/js/jobs.js" defer>']
    assert 'fill="#166534"' in page and 'fill="#b91c1c"' in page
    # Numbers in SVG attributes are never localised with a decimal comma.
    assert not re.search(r'(x|y|width|height)="\d+,\d', page)


def test_only_the_companys_own_activity_is_shown(admin_client_, outsider_client, history):
    assert "777777" not in admin_client_.get(ACTIVITY).content.decode()
    assert "777777" in outsider_client.get(ACTIVITY).content.decode()


def test_anonymous_users_are_sent_to_sign_in(anon_client):
    response = anon_client.get(ACTIVITY)
    assert response.status_code == 302 and "login" in response["Location"]


def test_queries_do_not_grow_with_history(
    admin_client_, company, history, django_assert_max_num_queries
):
    admin_client_.get(ACTIVITY)  # the first visit counts the company's jobs once
    for n in range(20):
        make_email_job(company, 1, subject=f"Job {n}")
    # Session, user, membership; job counts; the active jobs per kind; the activity rows.
    with django_assert_max_num_queries(7):
        assert admin_client_.get(ACTIVITY).status_code == 200


def test_dashboard_shows_todays_numbers_and_queued_items(admin_client_, company, history):
    job = make_email_job(company, 3)
    job.__class__.objects.filter(pk=job.pk).update(status=Status.PROCESSING, succeeded_items=1)
    page = admin_client_.get(reverse("bulkjobs:dashboard")).content.decode()
    assert "Sent today" in page and "Synced today" in page
    assert "<dt>Queued now</dt><dd>2</dd>" in page
    assert f'href="{ACTIVITY}"' in page
