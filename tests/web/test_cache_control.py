"""`Cache-Control: private, no-store` on every signed-in response (pages, polls, CSV
exports, action pages), not on what anonymous visitors get (the public card page and static files keep
their own)."""

import pytest
from django.urls import reverse

from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


def directives(response):
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part}


def test_every_tenant_response_is_private_and_not_stored(admin_client_, company):
    job = make_email_job(company, 2)
    args = ["email", job.pk]
    for url in [
        reverse("bulkjobs:dashboard"),
        reverse("bulkjobs:jobs_json"),
        reverse("bulkjobs:activity"),
        reverse("bulkjobs:job_detail", args=args),
        reverse("bulkjobs:job_json", args=args),
        reverse("bulkjobs:job_items_csv", args=args),
        reverse("bulkjobs:job_items_csv", args=args) + "?format=excel-de",
        reverse("bulkjobs:cancel", args=args),
        reverse("emails:send"),
    ]:
        response = admin_client_.get(url)
        assert response.status_code == 200, url
        assert {"private", "no-store"} <= directives(response), url
        assert "public" not in directives(response)


def test_the_polls_keep_their_revalidation(admin_client_, company):
    response = admin_client_.get(reverse("bulkjobs:jobs_json"))
    assert {"private", "no-store", "no-cache"} <= directives(response)
    assert response["ETag"]


def test_a_redirect_after_an_action_is_not_stored_either(admin_client_, company):
    job = make_email_job(company, 2)
    response = admin_client_.post(reverse("bulkjobs:cancel", args=["email", job.pk]))
    assert response.status_code == 302
    assert {"private", "no-store"} <= directives(response)


def test_anonymous_pages_are_left_alone(client, card):
    page = client.get(card.get_absolute_url())
    assert page.status_code == 200
    assert "no-store" not in directives(page)
