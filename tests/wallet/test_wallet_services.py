"""create_wallet_job, platform status, the wallet commands and the certificate checks."""

import datetime
from io import StringIO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import make_cards
from tests.wallet.conftest import PASS_TYPE_ID, TEAM_ID
from wallet.apple.devcerts import cert_pem, issue, key_pem
from wallet.checks import check_apple_wallet, check_apple_web_service_url
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem
from wallet.services import create_wallet_job, platform_status


@pytest.fixture
def nothing_configured(settings):
    for name in ("APPLE_PASS_CERT", "APPLE_PASS_KEY", "APPLE_PASS_P12", "APPLE_WWDR_CERT",
                 "APPLE_TEAM_ID", "APPLE_PASS_TYPE_ID"):  # fmt: skip
        setattr(settings, name, "")
    return settings


def test_refuses_when_no_platform_is_configured(nothing_configured, company, card):
    with pytest.raises(ValidationError) as error:
        create_wallet_job(company)
    message = " ".join(error.value.messages)
    assert "APPLE_PASS_CERT" in message and "APPLE_TEAM_ID" in message
    assert "GOOGLE_WALLET_ISSUER_ID" in message
    assert not BulkWalletApiJob.objects.exists()


def test_platform_status(apple):
    status = platform_status()
    assert status["apple"] == {"label": "Apple Wallet", "configured": True, "missing": []}
    assert status["google"]["configured"] is False
    assert "GOOGLE_WALLET_ISSUER_ID" in status["google"]["missing"]


def test_all_cards_or_chosen_ones(apple, company, owner, other_company):
    cards = make_cards(company, 4)
    make_cards(other_company, 2, prefix="Other")
    job = create_wallet_job(company, created_by=owner)
    assert job.total_items == 4 and job.created_by == owner
    assert set(BulkWalletApiJobItem.objects.filter(job=job).values_list("card", flat=True)) == {
        c.pk for c in cards
    }
    job = create_wallet_job(company, cards=[cards[0], cards[0], cards[1]])
    assert job.total_items == 2


def test_refuses_other_companies_cards_and_empty(apple, company, other_company):
    (other,) = make_cards(other_company, 1)
    with pytest.raises(ValidationError, match="do not belong"):
        create_wallet_job(company, cards=[other])
    with pytest.raises(ValidationError, match="no cards"):
        create_wallet_job(company)


def test_create_wallet_job_command(apple, company):
    cards = make_cards(company, 3)
    out = StringIO()
    call_command("create_wallet_job", "--company", "acme", "--all", stdout=out)
    assert "3 card(s)" in out.getvalue()
    call_command("create_wallet_job", "--company", "acme", "--card", str(cards[0].pk),
                 "--card", str(cards[2].pk), stdout=out)  # fmt: skip
    assert BulkWalletApiJob.objects.order_by("-id").first().total_items == 2
    with pytest.raises(CommandError, match="No card"):
        call_command("create_wallet_job", "--company", "acme", "--card", "99999")
    with pytest.raises(CommandError, match="No company"):
        call_command("create_wallet_job", "--company", "nope", "--all")


def test_create_wallet_job_command_explains_missing_settings(nothing_configured, company, card):
    with pytest.raises(CommandError, match="APPLE_WWDR_CERT"):
        call_command("create_wallet_job", "--company", "acme", "--all")


def test_process_wallet_jobs_command(apple, company):
    make_cards(company, 12)
    create_wallet_job(company)
    out = StringIO()
    call_command("process_wallet_jobs", stdout=out)
    assert "10 succeeded" in out.getvalue()


def test_make_dev_certificates_signs_passes(tmp_path, settings, card, client):
    out = StringIO()
    call_command("make_dev_certificates", "--out-dir", str(tmp_path), stdout=out)
    lines = dict(
        line.split("=", 1) for line in out.getvalue().splitlines() if "=" in line
    )  # fmt: skip
    for name, value in lines.items():
        setattr(settings, name, value)
    assert check_apple_wallet() == []
    response = client.get(f"/c/{card.public_id}/pass.pkpass")
    assert response.status_code == 200
    with pytest.raises(CommandError, match="--force"):
        call_command("make_dev_certificates", "--out-dir", str(tmp_path))


# --- checks ----------------------------------------------------------------------------


def ids(messages):
    return sorted(m.id for m in messages)


def test_checks_pass_with_good_certificates(apple):
    apple.APPLE_WEB_SERVICE_URL = "https://cards.example.com/wallet/apple/"
    assert check_apple_wallet() == []


def test_https_web_service_url_is_a_deploy_check(apple):
    apple.APPLE_WEB_SERVICE_URL = "http://localhost:8000/wallet/apple/"
    assert ids(check_apple_web_service_url()) == ["wallet.W003"]
    assert check_apple_wallet() == []  # not on every command run
    apple.APPLE_WEB_SERVICE_URL = "https://cards.example.com/wallet/apple/"
    assert check_apple_web_service_url() == []


def test_checks_silent_when_apple_is_off(nothing_configured):
    assert check_apple_wallet() == []


def test_check_partial_configuration(nothing_configured):
    nothing_configured.APPLE_TEAM_ID = TEAM_ID
    assert ids(check_apple_wallet()) == ["wallet.W001"]


def test_check_missing_file(apple, tmp_path):
    apple.APPLE_WWDR_CERT = str(tmp_path / "nope.pem")
    assert ids(check_apple_wallet()) == ["wallet.E001"]


def test_check_team_and_pass_type_mismatch(apple):
    apple.APPLE_TEAM_ID = "OTHERTEAM1"
    apple.APPLE_PASS_TYPE_ID = "pass.com.example.other"
    messages = check_apple_wallet()
    assert ids(messages) == ["wallet.E004", "wallet.E005"]
    assert TEAM_ID in messages[0].msg
    assert PASS_TYPE_ID in messages[1].msg


def test_check_certificate_not_issued_by_wwdr(apple, chain, tmp_path):
    # A WWDR-like intermediate with the same name but another key: only a real
    # signature check tells the difference.
    impostor_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor = issue(chain.wwdr_cert.subject, impostor_key.public_key(),
                     chain.root_cert.subject, chain.root_key, ca=True, path_length=0)  # fmt: skip
    (tmp_path / "wwdr.pem").write_bytes(cert_pem(impostor))
    apple.APPLE_WWDR_CERT = str(tmp_path / "wwdr.pem")
    assert ids(check_apple_wallet()) == ["wallet.E003"]


def test_check_expired_and_expiring_certificates(apple, chain, tmp_path):
    def pass_cert(days, start):
        return issue(chain.pass_cert.subject, chain.pass_key.public_key(),
                     chain.wwdr_cert.subject, chain.wwdr_key, ca=False, days=days,
                     not_before=start)  # fmt: skip

    now = datetime.datetime.now(datetime.UTC)
    (tmp_path / "expired.pem").write_bytes(cert_pem(pass_cert(30, now - datetime.timedelta(60))))
    apple.APPLE_PASS_CERT = str(tmp_path / "expired.pem")
    messages = check_apple_wallet()
    assert ids(messages) == ["wallet.E002"]
    assert "expired" in messages[0].msg
    (tmp_path / "soon.pem").write_bytes(cert_pem(pass_cert(10, now - datetime.timedelta(1))))
    apple.APPLE_PASS_CERT = str(tmp_path / "soon.pem")
    assert ids(check_apple_wallet()) == ["wallet.W002"]


def test_check_key_does_not_match(apple, tmp_path):
    (tmp_path / "k.pem").write_bytes(
        key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    )
    apple.APPLE_PASS_KEY = str(tmp_path / "k.pem")
    assert ids(check_apple_wallet()) == ["wallet.E006"]


def test_check_is_registered_with_manage_py_check(apple, tmp_path):
    apple.APPLE_TEAM_ID = "OTHERTEAM1"
    with pytest.raises(Exception, match="wallet.E004"):
        call_command("check", "--fail-level", "ERROR")


def test_team_from_certificate_subject_ou(chain):
    ou = chain.pass_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert ou[0].value == TEAM_ID
    assert isinstance(chain.pass_cert, x509.Certificate)


def test_load_demo_queues_a_wallet_job_when_configured(apple, db, settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("load_demo", stdout=out)
    job = BulkWalletApiJob.objects.get()
    assert job.total_items == 5
    assert f"Wallet sync job {job.pk} (5 cards) queued." in out.getvalue()
    call_command("load_demo", stdout=out)
    assert BulkWalletApiJob.objects.count() == 1


def test_load_demo_explains_when_no_wallet_is_configured(nothing_configured, db, settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("load_demo", stdout=out)
    assert "make_dev_certificates" in out.getvalue()
    assert not BulkWalletApiJob.objects.exists()


def test_the_sync_page_starts_a_job_for_the_selected_cards(apple, company, owner):
    """The web page's success path, with Apple Wallet configured (test certificates)."""
    from django.test import Client

    from tests.conftest import make_cards
    from wallet.models import BulkWalletApiJob

    cards = make_cards(company, 3)
    client = Client()
    client.force_login(owner)
    page = client.get("/wallet/sync/").content.decode()
    assert "Configured</span> Apple Wallet" in page
    response = client.post(
        "/wallet/sync/", {"card_mode": "selected", "cards": [cards[0].pk, cards[2].pk]}
    )
    job = BulkWalletApiJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/background-jobs/wallet/{job.pk}/"
    assert job.created_by == owner and job.total_items == 2
    assert sorted(job.items.values_list("card_id", flat=True)) == [cards[0].pk, cards[2].pk]


def test_the_sync_page_says_where_a_new_job_stands_in_the_companys_queue(apple, company, owner):
    """The message after starting a sync (bulkjobs.web.queue), as the job's page says it."""
    from django.test import Client

    from tests.conftest import make_cards
    from wallet.models import BulkWalletApiJob

    make_cards(company, 3)
    client = Client()
    client.force_login(owner)
    first = client.post("/wallet/sync/", {"card_mode": "all"}, follow=True).content.decode()
    assert "created with 3 cards. Starts on the next processor run." in first
    second = client.post("/wallet/sync/", {"card_mode": "all"}, follow=True).content.decode()
    older, newer = BulkWalletApiJob.objects.order_by("id")
    assert (
        f"Wallet sync job #{newer.pk} created with 3 cards. Behind #{older.pk} "
        "“Person 1 and 2 other cards”: starts in"
    ) in second
