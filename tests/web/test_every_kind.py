"""The web app is generic over job kinds: every registered kind gets its section, pages and admin."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils.text import capfirst

from bulkjobs.kinds import all_kinds
from bulkjobs.models import Status
from bulkjobs.web.dashboard import ordered_kinds
from bulkjobs.web.views import _item_columns

from .conftest import client_for

KINDS = [kind.name for kind in all_kinds()]


def make_job(kind, company, user, items=2):
    job = kind.job_model.objects.create(company=company, created_by=user, total_items=items)
    kind.item_model.objects.bulk_create(kind.item_model(job=job) for _ in range(items))
    return job


@pytest.fixture(params=KINDS)
def kind(request):
    return next(k for k in all_kinds() if k.name == request.param)


def test_wallet_section_comes_first():
    ordered = [k.name for k in ordered_kinds()]
    assert sorted(ordered) == sorted(KINDS)
    if "wallet" in KINDS:
        assert ordered[0] == "wallet"


def test_each_kind_has_its_dashboard_section(kind, admin_client_, company, owner):
    job = make_job(kind, company, owner)
    data = admin_client_.get(reverse("bulkjobs:jobs_json")).json()
    section = next(s for s in data["kinds"] if s["name"] == kind.name)
    assert section["label"] == kind.label
    assert [row["id"] for row in section["jobs"]] == [job.pk]
    page = admin_client_.get(reverse("bulkjobs:dashboard")).content.decode()
    assert f'<h2 id="heading-{kind.name}">{kind.label}</h2>' in page


def test_each_kind_has_detail_csv_and_actions(kind, admin_client_, company, owner):
    job = make_job(kind, company, owner)
    detail = admin_client_.get(reverse("bulkjobs:job_detail", args=[kind.name, job.pk]))
    assert detail.status_code == 200
    # The page shows the kind's columns that have a value in some item of the page
    # (these bare items have none), a folded detail under its column (views.page_cells).
    shown = detail.context["columns"]
    headers = [
        str(h) for h, attname, _r in _item_columns(kind) if attname not in kind.folded_columns
    ]
    assert set(shown) <= set(headers)
    for header in shown:
        assert f'<th scope="col">{capfirst(header)}</th>' in detail.content.decode()
    response = admin_client_.get(reverse("bulkjobs:job_items_csv", args=[kind.name, job.pk]))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["Item", "Status", "Reason", "Attempts", "Processed"]
    assert len(rows) == 3
    admin_client_.post(reverse("bulkjobs:cancel", args=[kind.name, job.pk]))
    job.refresh_from_db()
    assert (job.status, job.cancelled_items) == (Status.CANCELLED, 2)


def test_each_kind_has_a_working_admin(kind, company, owner):
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = client_for(root)
    job = make_job(kind, company, owner)
    meta = kind.job_model._meta
    item_meta = kind.item_model._meta
    changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    assert client.get(changelist).status_code == 200
    page = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[job.pk]))
    assert page.status_code == 200
    assert f"?job__id__exact={job.pk}" in page.content.decode()
    items = reverse(f"admin:{item_meta.app_label}_{item_meta.model_name}_changelist")
    assert client.get(items, {"job__id__exact": job.pk}).status_code == 200
