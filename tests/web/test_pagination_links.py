"""Pagination links keep the page's filter or search and use the right page parameter."""

import pytest

from bulkjobs.web import dashboard, views
from cards import web as cards_web
from tests.conftest import make_cards, make_email_job

pytestmark = pytest.mark.django_db


def test_job_items_pages_keep_the_status_filter(admin_client_, company, settings):
    job = make_email_job(company, views.ITEMS_PER_PAGE + 1)
    page = admin_client_.get(f"/background-jobs/email/{job.pk}/?status=pending").content.decode()
    assert 'href="?status=pending&amp;page=2" rel="next"' in page


def test_card_list_pages_keep_the_search(admin_client_, company):
    make_cards(company, cards_web.CARDS_PER_PAGE + 1, prefix="R&D Person")
    page = admin_client_.get("/cards/", {"q": "R&D"}).content.decode()
    assert 'href="?q=R%26D&amp;page=2" rel="next"' in page


def test_dashboard_sections_page_separately(admin_client_, company):
    for _ in range(dashboard.JOBS_PER_PAGE + 1):
        make_email_job(company, 1)
    page = admin_client_.get("/background-jobs/").content.decode()
    assert 'href="?email-page=2" rel="next">Older</a>' in page
    assert 'aria-label="Email jobs pages"' in page
