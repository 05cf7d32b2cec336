"""Per company and kind: how many jobs there are, and a version that moves with every job
created or deleted (bulkjobs.models.JobCount).

The dashboard's poll reads one small row per kind instead of counting the company's
jobs (100,000 of them cost more than the rest of the poll together). Job rows are
created and deleted through the ORM (the services' create(), the admin's and cascades'
delete()), so Django's post_save / post_delete signals see each one; a row missing for
a company (its first job, or jobs that existed before this table) is filled in from a
real COUNT once. A bulk_create() of jobs or a DELETE in plain SQL bypasses the signals:
recount_jobs() puts the row right again.
"""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save

from ..models import JobCount


def recount_jobs(kind, company_id):
    """Set the company's row from a real COUNT (creating it if needed); returns it."""
    jobs = kind.job_model.objects.filter(company_id=company_id).count()
    row, created = JobCount.objects.get_or_create(
        company_id=company_id, kind=kind.name, defaults={"jobs": jobs, "version": 1}
    )
    if not created and row.jobs != jobs:
        JobCount.objects.filter(pk=row.pk).update(jobs=jobs, version=F("version") + 1)
        row.refresh_from_db()
    return row


def job_counts(company_id, kinds):
    """{kind name: JobCount} of the company for these kinds; one query once every row
    exists."""
    rows = {row.kind: row for row in JobCount.objects.filter(company_id=company_id)}
    for kind in kinds:
        if kind.name not in rows:
            rows[kind.name] = _create_row(kind, company_id)[0]
    return rows


def _create_row(kind, company_id):
    """The company's first row, from a real COUNT: (row, True); (row, False) when another
    transaction created it first (its COUNT may not have seen this one's jobs)."""
    try:
        with transaction.atomic():
            return recount_jobs(kind, company_id), True
    except IntegrityError:
        return JobCount.objects.get(company_id=company_id, kind=kind.name), False


def _changed(kind, company_id, delta):
    def update():
        return JobCount.objects.filter(company_id=company_id, kind=kind.name).update(
            jobs=F("jobs") + delta, version=F("version") + 1
        )

    # A first job: count them all once (the new one included). Never on delete: the
    # company itself may be being deleted, and a row inserted now would hold that up.
    if not update() and delta > 0 and not _create_row(kind, company_id)[1]:
        update()


def connect(kind):
    """Keep the kind's JobCount rows as its jobs are created and deleted."""

    def saved(sender, instance, created, raw=False, **kwargs):
        if created and not raw:
            _changed(kind, instance.company_id, +1)

    def deleted(sender, instance, **kwargs):
        _changed(kind, instance.company_id, -1)

    uid = f"bulkjobs.web.jobcounts.{kind.name}"
    post_save.connect(saved, sender=kind.job_model, weak=False, dispatch_uid=uid)
    post_delete.connect(deleted, sender=kind.job_model, weak=False, dispatch_uid=uid)
