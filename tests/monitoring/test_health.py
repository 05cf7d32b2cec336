"""/healthz and `manage.py check_processors`: 200/503 and exit 0/1, and nothing leaked."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import AlertEvent, ProcessorRun
from cards.models import Membership
from tests.conftest import make_email_job, make_user

pytestmark = pytest.mark.django_db


def ran(kind, minutes_ago):
    ProcessorRun.objects.update_or_create(
        kind=kind, defaults={"last_started_at": timezone.now() - timedelta(minutes=minutes_ago)}
    )


def test_healthz_answers_200_with_status_and_ages_only(client, company):
    ran("email", 1)
    ran("wallet", 2)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["schema"] == "ok"
    assert set(body["processors"]) == {"email", "wallet"}
    assert 55 <= body["processors"]["email"]["last_run_age_seconds"] <= 70
    assert body["processors"]["wallet"]["stale"] is False


def test_healthz_answers_503_when_a_processor_stopped_or_never_ran(client, db, settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "PROCESSOR_STALE_MINUTES": "10"}
    ran("email", 1)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["processors"]["wallet"] == {
        "last_run_age_seconds": None,
        "stale": True,
        "clock_skew_seconds": None,
    }
    ran("wallet", 11)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "fail"
    assert response.json()["processors"]["wallet"]["stale"] is True
    ran("wallet", 9)
    assert client.get("/healthz").status_code == 200


def test_healthz_leaks_no_company_user_or_job(client, settings, smtp_sink, email_kind):
    from cards.models import Company

    company = Company.objects.create(name="Secretive Holding GmbH", slug="secretive")
    make_user("boss", company, Membership.Role.ADMIN, email="boss@secretive.example")
    job = make_email_job(company, ["reject@secretive.example", "ok@secretive.example"])
    run_once(email_kind)  # a job that failed an item, and an alert about it
    run_once(get_kind("wallet"))
    assert AlertEvent.objects.exists()
    response = client.get("/healthz")
    text = response.content.decode()
    for secret in ("Secretive", "secretive", "boss", "@", "reject", str(company.pk) + ","):
        assert secret not in text
    assert f'"{job.pk}"' not in text
    assert set(json.loads(text)) == {"status", "database", "schema", "processors"}
    assert client.post("/healthz").status_code == 405


def run_check(*args):
    try:
        call_command("check_processors", *args)
    except SystemExit as exc:
        return exc.code
    return 0


def test_check_processors_exit_codes_and_messages(db, capsys, settings):
    settings.ADMINS = []
    ran("email", 3)
    ran("wallet", 4)
    assert run_check() == 0
    assert capsys.readouterr().out.startswith("OK: last runs started email 180 s ago")

    assert run_check("--minutes", "3.5") == 1
    err = capsys.readouterr().err
    assert err.startswith("FAIL: The wallet processor has not run for 4 minutes (limit 3.5)")
    assert "email" not in err

    assert run_check("--minutes", "3.5", "--kind", "email") == 0
    ProcessorRun.objects.filter(kind="wallet").delete()
    assert run_check("--kind", "wallet") == 1
    assert "The wallet processor has never run" in capsys.readouterr().err


def test_check_processors_alerts_the_operators_once(db, capsys, settings, smtp_sink):
    settings.ADMINS = [("Ops", "ops@platform.test")]
    ran("email", 30)
    ran("wallet", 1)
    assert run_check() == 1
    assert run_check() == 1
    assert run_check("--no-alerts") == 1
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["ops@platform.test"]]
