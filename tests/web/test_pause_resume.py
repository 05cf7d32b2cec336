"""Pause and resume on the pages (dashboard row, job page, each with a confirmation page),
who did what shown on the job, the admin's actions asking first and leaving history, and
the pause_job / resume_job commands."""

import re
from io import StringIO

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.management import CommandError, call_command
from django.urls import reverse

from bulkjobs.models import JobAction, Status
from bulkjobs.ops.services import Actor, pause_job, retry_failed_items
from cards.models import Membership
from emails.models import BulkEmailJob
from tests.conftest import make_email_job, make_user
from tests.web.conftest import client_for, fail_items

pytestmark = pytest.mark.django_db

JSON = reverse("bulkjobs:jobs_json")
CHANGELIST = reverse("admin:emails_bulkemailjob_changelist")


@pytest.fixture
def superuser(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def su_client(superuser):
    return client_for(superuser)


@pytest.fixture
def anna(company):
    return make_user("anna", company, Membership.Role.ADMIN, first_name="Anna", last_name="Schmidt")


@pytest.fixture
def anna_client(anna):
    return client_for(anna)


def url(name, job):
    return reverse(f"bulkjobs:{name}", args=["email", job.pk])


def email_row(client, job):
    [section] = [k for k in client.get(JSON).json()["kinds"] if k["name"] == "email"]
    return next(row for row in section["jobs"] if row["id"] == job.pk)


def time_pattern():
    return r"\d\d:\d\d [A-Z]{3,4}"


def test_an_admin_is_offered_pause_on_the_row_and_the_job_page_a_member_is_not(
    anna_client, member_client, job
):
    row = email_row(anna_client, job)
    assert row["can_pause"] and not row["can_resume"]
    assert f'href="{url("pause", job)}"' in row["html"]
    page = anna_client.get(url("job_detail", job)).content.decode()
    assert f'href="{url("pause", job)}?next=' in page and "Pause job" in page
    member_row = email_row(member_client, job)
    assert url("pause", job) not in member_row["html"]
    assert url("pause", job) not in member_client.get(url("job_detail", job)).content.decode()


def test_pause_asks_first_then_pauses_and_says_who_did_it(anna_client, job, settings):
    settings.TIME_ZONE = "UTC"
    page = anna_client.get(url("pause", job) + "?next=/background-jobs/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"Pause email job #{job.pk}?" in text and "csrfmiddlewaretoken" in text
    job.refresh_from_db()
    assert job.status == Status.PENDING  # asking changed nothing

    response = anna_client.post(url("pause", job), {"next": "/background-jobs/"}, follow=True)
    assert response.redirect_chain[-1][0] == "/background-jobs/"
    assert f"Email job #{job.pk}, &#x27;Hello&#x27; paused after 0 sent" in (
        response.content.decode()
    )
    job.refresh_from_db()
    assert job.status == Status.PAUSED
    row = email_row(anna_client, job)
    assert (row["status_label"], row["badge"]) == ("Paused", "paused")
    assert row["can_resume"] and not row["can_pause"] and row["can_cancel"]
    assert not row["finished"]
    assert re.fullmatch(f"Paused by Anna Schmidt at {time_pattern()}", row["last_action"])
    assert row["last_action"] in row["html"]
    detail = anna_client.get(url("job_detail", job)).content.decode()
    assert row["last_action"] in detail and "Resume job" in detail
    action = JobAction.objects.get(job_id=job.pk)
    assert (action.action, action.via, action.user.username, action.name) == (
        JobAction.Action.PAUSE,
        JobAction.Via.APP,
        "anna",
        "Anna Schmidt",
    )


def test_resume_asks_first_then_resumes_and_the_history_lists_both(anna_client, anna, job):
    pause_job(job, by=Actor.person(anna))
    page = anna_client.get(url("resume", job)).content.decode()
    assert f"Resume email job #{job.pk}?" in page and "Paused by Anna Schmidt" in page
    response = anna_client.post(url("resume", job), headers={"accept": "application/json"})
    assert response.json()["ok"] is True and response.json()["status"] == Status.PENDING
    job.refresh_from_db()
    assert job.status == Status.PENDING
    detail = anna_client.get(url("job_detail", job)).content.decode()
    history = re.search(r"<ul class=\"plain history\" data-history>(.*?)</ul>", detail).group(1)
    entries = re.findall(r"<li>(.*?)</li>", history)
    assert [entry.split(" at ")[0] for entry in entries] == [
        "Resumed by Anna Schmidt",
        "Paused by Anna Schmidt",
    ]


def test_pause_and_resume_of_a_job_in_the_wrong_state_say_so(anna_client, job):
    fail_items(job, 1)
    response = anna_client.post(url("pause", job), follow=True).content.decode()
    assert "only a waiting or running job can be paused" in response
    response = anna_client.post(url("resume", job), follow=True).content.decode()
    assert "only a paused job can be resumed" in response
    assert not JobAction.objects.exists()
    page = anna_client.get(url("pause", job)).content.decode()
    assert "only a waiting or running job can be paused" in page
    assert 'class="button-row"' not in page  # no form to pause it


def test_pause_and_resume_need_csrf(anna, job):
    client = client_for(anna, enforce_csrf=True)
    assert client.post(url("pause", job)).status_code == 403
    job.refresh_from_db()
    assert job.status == Status.PENDING
    page = client.get(url("pause", job)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post(url("pause", job), {"csrfmiddlewaretoken": token}).status_code == 302
    job.refresh_from_db()
    assert job.status == Status.PAUSED


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_other_companies_get_404_and_members_403(action, outsider_client, member_client, job, anna):
    if action == "resume":
        pause_job(job, by=Actor.person(anna))
    before = BulkEmailJob.objects.get(pk=job.pk).status
    assert outsider_client.get(url(action, job)).status_code == 404
    assert outsider_client.post(url(action, job)).status_code == 404
    assert member_client.get(url(action, job)).status_code == 403
    assert member_client.post(url(action, job)).status_code == 403
    assert BulkEmailJob.objects.get(pk=job.pk).status == before


def test_cancel_and_retry_say_who_did_them(anna_client, anna, company, cards):
    company.time_zone = "Europe/Berlin"  # times in the company's zone, named
    company.save()
    job = make_email_job(company, cards=cards, created_by=anna)
    anna_client.post(url("cancel", job))
    row = email_row(anna_client, job)
    assert re.fullmatch(f"Cancelled by Anna Schmidt at {time_pattern()}", row["last_action"])
    assert row["last_action"].endswith(("CET", "CEST"))
    finished = fail_items(make_email_job(company, cards=cards, created_by=anna), 2)
    anna_client.post(url("retry", finished))
    assert email_row(anna_client, finished)["last_action"].startswith("Retried by Anna Schmidt")


def test_who_did_it_is_kept_when_the_account_is_gone(anna, job):
    pause_job(job, by=Actor.person(anna))
    anna.delete()
    action = JobAction.objects.get(job_id=job.pk)
    assert action.user is None
    assert action.describe().startswith("Paused by Anna Schmidt at ")


def test_german_pages_say_pausiert_and_who(company, anna, job):
    company.language = "de"
    company.save()
    client = client_for(anna)
    pause_job(job, by=Actor.person(anna))
    row = email_row(client, job)
    assert row["status_label"] == "Pausiert"
    assert row["last_action"].startswith("Pausiert von Anna Schmidt um ")
    page = client.get(url("resume", job)).content.decode()
    assert "Auftrag fortsetzen" in page


def test_the_dashboard_filter_finds_paused_jobs(anna_client, anna, company, cards):
    paused = make_email_job(company, cards=cards, created_by=anna)
    make_email_job(company, cards=cards, created_by=anna)
    pause_job(paused, by=Actor.person(anna))
    [section] = [
        k for k in anna_client.get(JSON + "?status=paused").json()["kinds"] if k["name"] == "email"
    ]
    assert [row["id"] for row in section["jobs"]] == [paused.pk]


# --- the admin: operators' actions ask first and leave history ------------------------------


def post_action(client, name, *jobs, confirmed=False):
    data = {"action": name, "_selected_action": [job.pk for job in jobs]}
    if confirmed:
        data["post"] = "yes"
    return client.post(CHANGELIST, data, follow=True)


@pytest.mark.parametrize(
    ("name", "prepare", "expected"),
    [
        ("pause_jobs", None, Status.PAUSED),
        ("resume_jobs", Status.PAUSED, Status.PENDING),
        ("cancel_jobs", None, Status.CANCELLED),
    ],
)
def test_admin_actions_ask_first_then_act_record_the_operator_and_write_admin_history(
    name, prepare, expected, su_client, superuser, job
):
    if prepare:
        BulkEmailJob.objects.filter(pk=job.pk).update(status=prepare)
    before = BulkEmailJob.objects.get(pk=job.pk).status
    page = post_action(su_client, name, job)
    text = page.content.decode()
    assert page.status_code == 200 and 'name="post" value="yes"' in text
    assert f'value="{name}"' in text and f"bulk email job #{job.pk} (" in text
    assert BulkEmailJob.objects.get(pk=job.pk).status == before  # asked only
    assert not LogEntry.objects.exists()

    post_action(su_client, name, job, confirmed=True)
    assert BulkEmailJob.objects.get(pk=job.pk).status == expected
    [entry] = LogEntry.objects.all()
    assert (entry.action_flag, entry.object_id, entry.user_id) == (
        CHANGE,
        str(job.pk),
        superuser.pk,
    )
    action = JobAction.objects.get(job_id=job.pk)
    assert (action.via, action.user_id) == (JobAction.Via.ADMIN, superuser.pk)
    changelist = su_client.get(CHANGELIST).content.decode()
    assert f"by {action.name} at" in changelist
    change = su_client.get(reverse("admin:emails_bulkemailjob_change", args=[job.pk]))
    assert f"by {action.name} at" in change.content.decode()


def test_admin_retry_and_release_also_ask_first_and_log(su_client, job, company, cards, owner):
    failed = fail_items(make_email_job(company, cards=cards, created_by=owner), 2)
    page = post_action(su_client, "retry_jobs", failed).content.decode()
    assert "Retry the failed items of these jobs?" in page
    assert BulkEmailJob.objects.get(pk=failed.pk).status == Status.COMPLETED
    post_action(su_client, "retry_jobs", failed, confirmed=True)
    assert BulkEmailJob.objects.get(pk=failed.pk).status == Status.PENDING
    assert (
        LogEntry.objects.get(object_id=str(failed.pk))
        .get_change_message()
        .startswith("Retried: 2 failed item(s)")
    )
    BulkEmailJob.objects.filter(pk=job.pk).update(status=Status.PROCESSING, claim_token="abc")
    assert "Release the claims" in post_action(su_client, "release_claims", job).content.decode()
    assert BulkEmailJob.objects.get(pk=job.pk).claim_token == "abc"
    post_action(su_client, "release_claims", job, confirmed=True)
    assert BulkEmailJob.objects.get(pk=job.pk).claim_token is None
    assert LogEntry.objects.get(object_id=str(job.pk)).get_change_message() == "Claim released."


def test_the_admin_confirmation_names_jobs_it_leaves_alone(su_client, job, company, cards):
    done = fail_items(make_email_job(company, cards=cards), 0)
    text = post_action(su_client, "pause_jobs", job, done).content.decode()
    assert "Yes, pause (1 job)" in text
    assert "Not changed (not pending or processing; left as they are)" in text


# --- the commands -----------------------------------------------------------------------------


def command(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_pause_job_and_resume_job_commands(job):
    assert command("pause_job", "email", str(job.pk)) == (
        f"Paused email job {job.pk} after 0 of 3 item(s); resume it with: "
        f"manage.py resume_job email {job.pk}"
    )
    job.refresh_from_db()
    assert job.status == Status.PAUSED
    with pytest.raises(CommandError, match="is paused; only pending or processing jobs"):
        command("pause_job", "email", str(job.pk))
    assert command("resume_job", "email", str(job.pk)) == (
        f"Resumed email job {job.pk}: 3 item(s) left to do."
    )
    with pytest.raises(CommandError, match="is pending; only paused jobs can be resumed"):
        command("resume_job", "email", str(job.pk))
    with pytest.raises(CommandError, match="No email job with id 999999"):
        command("pause_job", "email", "999999")
    history = [(a.action, a.who()) for a in JobAction.objects.for_job("email", job.pk)]
    assert history == [
        (JobAction.Action.RESUME, "command resume_job"),
        (JobAction.Action.PAUSE, "command pause_job"),
    ]
    latest = JobAction.objects.for_job("email", job.pk).first()
    assert latest.describe().startswith("Resumed by command resume_job at ")


def test_cancel_job_and_retry_job_commands_record_themselves(job, company, cards):
    command("pause_job", "email", str(job.pk))
    assert command("cancel_job", "email", str(job.pk)).endswith("3 item(s) cancelled.")
    finished = fail_items(make_email_job(company, cards=cards), 1)
    command("retry_job", "email", str(finished.pk))
    assert JobAction.objects.for_job("email", job.pk).first().who() == "command cancel_job"
    assert JobAction.objects.for_job("email", finished.pk).first().who() == "command retry_job"


def test_command_help_says_what_they_do():
    from bulkjobs.management.commands import pause_job as pause_module
    from bulkjobs.management.commands import resume_job as resume_module

    assert "until `manage.py resume_job` resumes it" in pause_module.Command.help
    assert "A batch in flight stops before its next item" in pause_module.Command.help
    assert "goes on with its items not yet done" in resume_module.Command.help


def test_a_retry_by_nobody_in_particular_is_recorded_without_a_name(job):
    fail_items(job, 1)
    retry_failed_items(job)
    assert JobAction.objects.get(job_id=job.pk).describe().startswith("Retried at ")
