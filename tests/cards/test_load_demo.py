"""load_demo in production: refused with DEBUG off unless --allow-production, never
changes a user that exists, and `check --deploy` warns while a demo user still has the
public demo password (cards.checks, cards.W001)."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError

from cards.checks import check_demo_passwords
from cards.demo import DEMO_PASSWORD
from cards.models import Company, Membership

pytestmark = pytest.mark.django_db
User = get_user_model()


def test_refused_with_debug_off(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="load_demo is for development.*--allow-production"):
        call_command("load_demo", stdout=StringIO())

    assert not User.objects.exists()
    assert not Company.objects.exists()


def test_runs_with_debug_off_when_allowed_explicitly(settings):
    settings.DEBUG = False

    call_command("load_demo", "--allow-production", stdout=StringIO())

    assert set(User.objects.values_list("username", flat=True)) == {"admin", "member", "operator"}


def test_existing_users_are_never_changed(settings):
    """What the attack did: a real superuser `admin` demoted, `operator` made superuser,
    `member` given the public password."""
    settings.DEBUG = False
    admin = User.objects.create_superuser("admin", "boss@real.example", "real-admin-secret")
    operator = User.objects.create_user("operator", password="operator-secret")
    member = User.objects.create_user("member", password="member-secret")
    other = Company.objects.create(name="Real Co", slug="real")
    Membership.objects.create(user=member, company=other, role=Membership.Role.MEMBER)
    before = {u.username: (u.password, u.is_staff, u.is_superuser) for u in User.objects.all()}

    out = StringIO()
    call_command("load_demo", "--allow-production", stdout=out)

    after = {u.username: (u.password, u.is_staff, u.is_superuser) for u in User.objects.all()}
    assert after == before
    admin.refresh_from_db()
    assert admin.is_superuser and admin.check_password("real-admin-secret")
    assert not operator.__class__.objects.get(pk=operator.pk).is_superuser
    # No membership in the demo company for users the demo did not create.
    assert list(Membership.objects.filter(user=member).values_list("company__slug", flat=True)) == [
        "real"
    ]
    assert not Membership.objects.filter(user=admin).exists()
    assert "User 'admin' exists already; left unchanged." in out.getvalue()


def test_deploy_check_warns_while_a_demo_user_has_the_demo_password(settings):
    settings.DEBUG = True
    call_command("load_demo", stdout=StringIO())

    [warning] = check_demo_passwords(None)
    assert warning.id == "cards.W001"
    assert "admin, member, operator" in warning.msg
    with pytest.raises(SystemCheckError, match="cards.W001"):
        call_command("check", "--deploy", "--fail-level", "WARNING", "--tag", "security")

    for name in ("admin", "member"):
        user = User.objects.get(username=name)
        user.set_password("a-new-long-password")
        user.save()
    [warning] = check_demo_passwords(None)
    assert "operator" in warning.msg and "admin" not in warning.msg

    User.objects.filter(username="operator").update(is_active=False)
    assert check_demo_passwords(None) == []


def test_deploy_check_ignores_other_users_with_that_password():
    """Only the demo usernames are hashed: a site with many users pays three hashes."""
    User.objects.create_user("someone", password=DEMO_PASSWORD)
    User.objects.create_user("admin", password="not the demo one")

    assert check_demo_passwords(None) == []
