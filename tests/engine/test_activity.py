"""Hourly activity: one upsert per batch adds to the company's row, and the charts'
numbers and geometry come from those rows."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bulkjobs import engine
from bulkjobs.engine.activity import hour_start, record_batch_activity
from bulkjobs.kinds import get_kind
from bulkjobs.models import ActivityHour
from bulkjobs.web.charts import DAYS, HOURS, kind_activity, nice_maximum, read_activity
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)


def add(company, at, processed, failed=0, kind="email"):
    record_batch_activity(
        company.pk, kind, at, processed=processed, failed=failed, attempts=processed, busy_seconds=1
    )


def test_the_upsert_adds_to_the_hours_row_per_company_and_kind(company, other_company):
    add(company, NOON, 50, 2)
    add(company, NOON + timedelta(minutes=20), 50, 1)  # same hour: added
    add(company, NOON + timedelta(minutes=40), 10)  # 13:10: the next hour
    add(company, NOON, 10, kind="wallet")
    add(other_company, NOON, 7)
    rows = {
        (r.company_id, r.kind, r.hour): (r.processed, r.failed, r.attempts, r.busy_seconds)
        for r in ActivityHour.objects.all()
    }
    twelve = NOON.replace(minute=0)
    assert rows == {
        (company.pk, "email", twelve): (100, 3, 100, 2.0),
        (company.pk, "email", twelve + timedelta(hours=1)): (10, 0, 10, 1.0),
        (company.pk, "wallet", twelve): (10, 0, 10, 1.0),
        (other_company.pk, "email", twelve): (7, 0, 7, 1.0),
    }


def test_a_batch_records_its_outcomes_once(company, email_kind, smtp_sink, settings, database_time):
    settings.BULKJOBS = {**getattr(settings, "BULKJOBS", {}), "MAX_ATTEMPTS": 2}
    make_email_job(company, ["ok@example.net", "reject@example.net", "tempfail@example.net"])
    before = database_time.now()
    engine.run_once(email_kind)
    hours = {hour_start(before), hour_start(database_time.now())}
    [row] = ActivityHour.objects.all()
    # tempfail@ waits for its retry: an attempt, not yet an outcome. The hour is the
    # database's (the run may straddle an hour's end).
    assert (row.company_id, row.kind) == (company.pk, "email") and row.hour in hours
    assert (row.processed, row.failed, row.attempts) == (2, 1, 3)
    assert row.busy_seconds >= 0


def test_summary_and_charts_from_the_rows(company, other_company):
    company.time_zone = "Europe/Berlin"  # UTC+1 in March
    company.save()
    add(company, NOON, 40, 4)  # 13:30 in Berlin, today
    add(company, NOON - timedelta(hours=3), 10, 0)  # 10:30 Berlin, today
    add(
        company, NOON - timedelta(hours=13), 20, 5
    )  # 00:30 Berlin, today (23:30 UTC the day before)
    add(company, NOON - timedelta(days=2), 8, 8)  # two days ago: daily chart only
    add(company, NOON - timedelta(days=40), 99, 9)  # too old for either chart
    add(other_company, NOON, 1000, 1000)  # another company's: never shown
    rows = read_activity(company, NOON)
    result = kind_activity(get_kind("email"), rows, NOON, ZoneInfo("Europe/Berlin"), queued=12)
    assert (result.sent_today, result.failed_today, result.queued) == (61, 9, 12)
    assert len(result.hourly.bars) == HOURS and len(result.daily.bars) == DAYS
    assert result.hourly.total_processed == 70 and result.hourly.total_failed == 9
    assert result.daily.total_processed == 78 and result.daily.total_failed == 17
    latest = result.hourly.bars[-1]
    assert (latest.title, latest.processed, latest.failed) == ("2026-03-02 13:00", 40, 4)
    assert result.daily.bars[-1].title == "2026-03-02" and result.daily.bars[-1].processed == 70
    # Geometry: the axis tops out at 50 for 40 items; heights are proportional.
    assert result.hourly.maximum == 50
    plot = result.hourly.baseline - result.hourly.top
    assert latest.ok_height == pytest.approx(plot * 36 / 50, abs=0.01)
    assert latest.failed_height == pytest.approx(plot * 4 / 50, abs=0.01)
    assert latest.failed_y + latest.failed_height == pytest.approx(latest.ok_y, abs=0.01)
    assert "70 items processed, 9 failed, over 24 periods" in result.hourly.description


@pytest.mark.parametrize(
    ("value", "top"), [(0, 10), (5, 10), (10, 10), (11, 20), (40, 50), (51, 100), (2001, 5000)]
)
def test_axis_maximum(value, top):
    assert nice_maximum(value) == top
