"""Unsubscribe links whose signature is right but whose content is not what we sign: a clear
404 page for people and mail providers alike, never a 500, and nothing suppressed."""

import pytest
from django.core import signing
from django.test import Client

from emails.models import EmailSuppression
from emails.unsubscribe import make_token

pytestmark = pytest.mark.django_db

MALFORMED_VALUES = [
    ["c", "e"],
    "jane@example.com",
    42,
    None,
    {},
    {"c": "abc", "e": "jane@example.com"},
    {"c": "1", "e": "jane@example.com"},
    {"c": 1},
    {"c": 1, "e": 5},
    {"c": 1, "e": "no-at-sign"},
    {"c": 1, "e": "a" * 300 + "@example.com"},
    {"c": 1, "e": "jane\x00@example.com"},
    {"c": True, "e": "jane@example.com"},
    {"c": -1, "e": "jane@example.com"},
    {"c": 10**30, "e": "jane@example.com"},
    {"c": 1.5, "e": "jane@example.com"},
]


def signed(value):
    """A token signed exactly as the app signs its own (same key, salt and compression)."""
    return signing.dumps(value, salt="emails.unsubscribe", compress=True)


@pytest.mark.parametrize("value", MALFORMED_VALUES, ids=repr)
def test_a_signed_but_malformed_token_is_a_clear_404(company, value):
    url = f"/emails/unsubscribe/{signed(value)}/"
    client = Client(enforce_csrf_checks=True)
    for response in (
        client.get(url),
        client.post(url, {"List-Unsubscribe": "One-Click"}),
        client.post(url),
    ):
        assert response.status_code == 404
        assert "This unsubscribe link is not valid." in response.content.decode()
    assert not EmailSuppression.objects.exists()


def test_a_well_formed_token_for_a_deleted_company_is_a_404(company):
    token = make_token(company.pk, "jane@example.com")
    company.delete()
    response = Client().get(f"/emails/unsubscribe/{token}/")
    assert response.status_code == 404
    assert "This unsubscribe link is not valid." in response.content.decode()


def test_the_tokens_the_app_makes_still_work(company):
    token = make_token(company.pk, "Jane@Example.com")
    response = Client().post(f"/emails/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert EmailSuppression.objects.filter(company=company, email="jane@example.com").exists()
