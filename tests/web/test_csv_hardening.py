"""The job CSV against formula injection: every text cell quoted, a formula's first
character neutralised at the start of the cell and of every part a `,` or `;` split would
make; and the German Excel dialect (`;`, UTF-8 BOM), offered on the job page."""

import csv
import io

import pytest
from django.urls import reverse

from bulkjobs.web.export import _csv_cell
from emails.models import BulkEmailJobItem
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "text, expected",
    [
        ("=2+5", "'=2+5"),
        ("Evil;=2+5", "Evil;'=2+5"),
        ("Evil,=2+5", "Evil,'=2+5"),
        ("Evil; =HYPERLINK(1)", "Evil; '=HYPERLINK(1)"),
        ("a;+1;-1;@SUM(A1)", "a;'+1;'-1;'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("x;\r=1", "x;'\r=1"),
        ("Jane Doe", "Jane Doe"),
        ("2026-12-06T10:00:00+01:00", "2026-12-06T10:00:00+01:00"),
        ("Mary-Ann O'Neil", "Mary-Ann O'Neil"),
    ],
)
def test_formula_starts_are_neutralised_in_every_part(text, expected):
    assert _csv_cell(text) == expected


@pytest.fixture
def evil_job(company):
    """A job whose first recipient's name is `Evil;=2+5` (as a contact list may give it)."""
    job = make_email_job(company, ["evil@example.org", "plain@example.org"])
    first, second = BulkEmailJobItem.objects.filter(job=job).order_by("id")
    BulkEmailJobItem.objects.filter(pk=first.pk).update(recipient_name="Evil;=2+5")
    BulkEmailJobItem.objects.filter(pk=second.pk).update(recipient_name="Plain")
    return job


def export(client, job, **params):
    response = client.get(reverse("bulkjobs:job_items_csv", args=["email", job.pk]), params)
    assert response.status_code == 200
    return response, b"".join(response.streaming_content).decode()


def test_plain_csv_quotes_every_text_cell(admin_client_, evil_job):
    response, body = export(admin_client_, evil_job)

    lines = body.splitlines()
    assert lines[0].startswith('"Item","Status","Reason",')
    first = lines[1]
    # Numbers (the id, attempts, the card) bare; text quoted, the name neutralised.
    assert first.startswith(f'{evil_job.items.order_by("id").first().pk},"Pending",')
    assert '"Evil;\'=2+5"' in first
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[1][7] == "Evil;'=2+5"
    # Split as a German spreadsheet splits it, no part starts a formula.
    for line in lines:
        for part in line.replace(",", ";").split(";"):
            assert part.strip(' "')[:1] not in ("=", "+", "@"), line


def test_german_excel_variant(admin_client_, evil_job):
    response, body = export(admin_client_, evil_job, format="excel-de", status="pending")

    assert (
        f'filename="email-job-{evil_job.pk}-items-pending-excel-de.csv"'
        in (response["Content-Disposition"])
    )
    assert body.startswith('\ufeff"Item";"Status";')
    assert body.count("\ufeff") == 1
    rows = list(csv.reader(io.StringIO(body.removeprefix("\ufeff")), delimiter=";"))
    assert [row[7] for row in rows[1:]] == ["Evil;'=2+5", "Plain"]
    assert rows[1][6] == "evil@example.org"


def test_an_unknown_format_is_the_plain_one(admin_client_, evil_job):
    _response, body = export(admin_client_, evil_job, format="../../etc")
    assert body.startswith('"Item","Status"')


def test_the_job_page_offers_both(admin_client_, evil_job):
    page = admin_client_.get(reverse("bulkjobs:job_detail", args=["email", evil_job.pk])).text
    csv_url = reverse("bulkjobs:job_items_csv", args=["email", evil_job.pk])
    assert f'href="{csv_url}"' in page
    assert f'href="{csv_url}?format=excel-de"' in page
    assert "CSV for Excel (German)" in page
