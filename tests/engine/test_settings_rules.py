"""Engine settings that are only safe together: the heartbeat follows the stuck limit, and
the system checks and conf.validate() (what every run calls) refuse what would hurt."""

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from bulkjobs import conf
from bulkjobs.engine import run_once


@pytest.fixture
def engine(settings):
    """Set engine settings (BULKJOBS keys) and provider timeouts for one test."""
    settings.EMAIL_TIMEOUT = 20.0
    settings.APNS_TIMEOUT = 10.0
    settings.GOOGLE_WALLET_TIMEOUT = 15.0

    def configure(**values):
        bulkjobs = {**settings.BULKJOBS}
        for name, value in values.items():
            if name.endswith("_TIMEOUT"):
                setattr(settings, name, value)
            else:
                bulkjobs[name] = value
        settings.BULKJOBS = bulkjobs

    return configure


def bulkjobs_checks():
    return {m.id: m for m in checks.run_checks(tags=["bulkjobs"])}


@pytest.mark.parametrize(
    "values, seconds",
    [
        ({}, 20),  # the defaults: 20 s, well below 10 minutes
        ({"STUCK_MINUTES": "1"}, 20),  # a third of a minute is 20 s: the same
        ({"STUCK_MINUTES": "0.5"}, 10),  # a third of 30 s
        ({"STUCK_MINUTES": "0.05"}, 1),  # a third of 3 s
        ({"HEARTBEAT_SECONDS": "5"}, 5),  # more often than a third is fine
        ({"HEARTBEAT_SECONDS": "600", "STUCK_MINUTES": "2"}, 40),  # capped at a third
    ],
)
def test_the_heartbeat_is_at_most_a_third_of_the_stuck_limit(engine, values, seconds):
    engine(**values)
    assert conf.heartbeat_seconds() == pytest.approx(seconds)


def test_the_defaults_pass_the_checks(engine):
    assert bulkjobs_checks() == {}
    conf.validate()


def test_a_stuck_limit_shorter_than_three_provider_timeouts_is_an_error(engine):
    engine(STUCK_MINUTES="0.2")
    problem = bulkjobs_checks()["bulkjobs.E001"]
    assert problem.level == checks.ERROR
    assert problem.msg.startswith(
        "BULKJOBS_STUCK_MINUTES = 0.2 (12 s) is too short for EMAIL_TIMEOUT = 20 s:"
    )
    assert problem.hint.startswith(
        "Set BULKJOBS_STUCK_MINUTES to at least 1 (3 x EMAIL_TIMEOUT), or lower EMAIL_TIMEOUT"
    )
    # A run refuses it too (the processing commands skip the system checks), in one line
    # naming both settings.
    with pytest.raises(ImproperlyConfigured) as refused:
        conf.validate()
    assert "\n" not in str(refused.value)
    assert "BULKJOBS_STUCK_MINUTES = 0.2" in str(refused.value)
    assert "or lower EMAIL_TIMEOUT" in str(refused.value)


def test_the_longest_provider_timeout_sets_the_minimum(engine):
    # 45 s of stuck limit: enough for EMAIL_TIMEOUT = 15 s, not for a 20 s Google timeout.
    engine(STUCK_MINUTES="0.75", EMAIL_TIMEOUT=15.0, GOOGLE_WALLET_TIMEOUT=20.0)
    problem = bulkjobs_checks()["bulkjobs.E001"]
    assert "GOOGLE_WALLET_TIMEOUT = 20 s" in problem.msg
    assert "at least 1 (3 x GOOGLE_WALLET_TIMEOUT)" in problem.hint
    engine(GOOGLE_WALLET_TIMEOUT=15.0)
    assert bulkjobs_checks() == {}
    conf.validate()


def test_short_timeouts_allow_a_short_stuck_limit(engine):
    engine(STUCK_MINUTES="0.05", EMAIL_TIMEOUT=1.0, APNS_TIMEOUT=1.0, GOOGLE_WALLET_TIMEOUT=1.0)
    assert "bulkjobs.E001" not in bulkjobs_checks()
    conf.validate()


def test_an_explicit_heartbeat_not_well_below_the_stuck_limit_is_a_warning(engine):
    # Harmless (the engine heartbeats every 200 s instead), but not what it says.
    engine(HEARTBEAT_SECONDS="600", STUCK_MINUTES="10")
    problem = bulkjobs_checks()["bulkjobs.W001"]
    assert problem.level == checks.WARNING
    assert "the engine heartbeats every 200 s instead" in problem.msg
    assert problem.hint == "Remove HEARTBEAT_SECONDS from BULKJOBS, or set it to at most 200."
    conf.validate()  # not refused


def test_an_inactivity_limit_not_above_the_stuck_limit_is_a_warning(engine):
    engine(INACTIVE_MINUTES="5")
    problem = bulkjobs_checks()["bulkjobs.W002"]
    assert problem.level == checks.WARNING
    assert "BULKJOBS_INACTIVE_MINUTES = 5 is not above BULKJOBS_STUCK_MINUTES = 10" in problem.msg
    conf.validate()


def test_a_statement_timeout_not_above_the_lock_timeout_is_a_warning(engine):
    assert "bulkjobs.W004" not in bulkjobs_checks()
    engine(LOCK_TIMEOUT_SECONDS="10", STATEMENT_TIMEOUT_SECONDS="10")
    problem = bulkjobs_checks()["bulkjobs.W004"]
    assert problem.level == checks.WARNING
    assert problem.msg.startswith(
        "BULKJOBS_STATEMENT_TIMEOUT_SECONDS = 10 is not above BULKJOBS_LOCK_TIMEOUT_SECONDS = 10"
    )
    conf.validate()


def test_a_bad_value_is_an_error_of_its_own(engine):
    engine(STUCK_MINUTES="ten")
    problems = bulkjobs_checks()
    assert list(problems) == ["bulkjobs.E002"]
    assert problems["bulkjobs.E002"].msg.startswith("BULKJOBS_STUCK_MINUTES must be a positive")


@pytest.mark.django_db
def test_a_run_refuses_an_unsafe_stuck_limit_before_touching_anything(engine, email_kind):
    engine(STUCK_MINUTES="0.2")
    with pytest.raises(ImproperlyConfigured, match="BULKJOBS_STUCK_MINUTES = 0.2"):
        run_once(email_kind)
