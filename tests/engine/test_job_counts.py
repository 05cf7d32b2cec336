"""JobCount: the dashboard's job count and change version, kept as jobs come and go."""

import pytest

from bulkjobs.kinds import all_kinds, get_kind
from bulkjobs.models import JobCount, Status
from bulkjobs.web.dashboard import ordered_kinds
from bulkjobs.web.fingerprint import fingerprints
from bulkjobs.web.jobcounts import job_counts, recount_jobs
from cards.models import Company
from emails.models import BulkEmailJob
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


def email_row(company):
    return JobCount.objects.get(company=company, kind="email")


def test_creating_and_deleting_jobs_moves_the_count_and_version(company, other_company):
    first = make_email_job(company, 1)
    assert (email_row(company).jobs, email_row(company).version) == (1, 1)
    second = make_email_job(company, 1)
    make_email_job(other_company, 1)
    assert (email_row(company).jobs, email_row(company).version) == (2, 2)
    first.delete()
    BulkEmailJob.objects.filter(pk=second.pk).delete()  # a queryset delete too
    assert (email_row(company).jobs, email_row(company).version) == (0, 4)
    assert email_row(other_company).jobs == 1


def test_jobs_from_before_the_table_are_counted_once(company):
    for _ in range(3):
        make_email_job(company, 1)
    JobCount.objects.all().delete()  # as after the upgrade that added the table
    rows = job_counts(company.pk, all_kinds())
    assert (rows["email"].jobs, rows["wallet"].jobs) == (3, 0)
    make_email_job(company, 1)
    assert email_row(company).jobs == 4


def test_recount_repairs_a_count_plain_sql_bypassed(company):
    job = make_email_job(company, 1)
    BulkEmailJob.objects.bulk_create([BulkEmailJob(company=company, subject="bulk")] * 1)
    assert email_row(company).jobs == 1
    assert recount_jobs(get_kind("email"), company.pk).jobs == 2
    assert email_row(company).version == 2
    job.delete()
    assert email_row(company).jobs == 1


def test_deleting_a_company_with_jobs_works(company):
    make_email_job(company, 2)
    job_counts(company.pk, all_kinds())
    Company.objects.filter(pk=company.pk).delete()
    assert not JobCount.objects.exists()


def test_the_etag_changes_when_a_finished_job_is_deleted(company):
    keep = make_email_job(company, 1)
    gone = make_email_job(company, 1)
    BulkEmailJob.objects.filter(pk__in=[keep.pk, gone.pk]).update(status=Status.COMPLETED)
    before = fingerprints(company, ordered_kinds())
    assert before["email"]["count"] == 2
    gone.delete()
    after = fingerprints(company, ordered_kinds())
    assert after["email"]["count"] == 1 and after != before
