"""The send page never loses what the user typed: every error re-renders the whole form as sent
(pasted list, uploaded list, subject, message, modes, ticked cards), and none is a 500."""

import re
from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from cards.models import Membership
from emails.models import BulkEmailJob
from tests.conftest import make_cards, make_user

pytestmark = pytest.mark.django_db

SEND = reverse("emails:send")
PASTED = "ann@example.com\nBob Roe <bob@example.org>"


class FormState(HTMLParser):
    """What a browser would submit again from the rendered form: field name -> values."""

    def __init__(self, html):
        super().__init__()
        self.values = {}
        self._textarea = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "textarea":
            self._textarea = attrs["name"]
            self.values.setdefault(self._textarea, [""])
        elif tag == "input" and attrs.get("type") in ("radio", "checkbox"):
            if "checked" in attrs:
                # A lone checkbox (Django's BooleanField) has no value: browsers send "on".
                self.values.setdefault(attrs["name"], []).append(attrs.get("value", "on"))
        elif tag == "input" and attrs.get("type") == "text":
            self.values.setdefault(attrs["name"], []).append(attrs.get("value", ""))

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea][-1] += data


def form_state(response):
    values = FormState(response.content.decode()).values
    # Django renders a newline right after <textarea> that browsers drop.
    return {name: [v.removeprefix("\n") for v in found] for name, found in values.items()}


@pytest.fixture
def client(company):
    owner = make_user("owner", company, Membership.Role.ADMIN)
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def cards(company):
    return make_cards(company, 3)


def list_post(**overrides):
    data = {
        "card_mode": "selected",
        "recipient_mode": "list",
        "recipients_text": PASTED,
        "consent": "on",
        "subject": "Our new cards",
        "message": "Hello from Acme",
        "action": "start",
    }
    data.update(overrides)
    return data


def assert_kept(response, **expected):
    assert response.status_code == 400
    state = form_state(response)
    for name, values in expected.items():
        assert state.get(name) == values, name
    assert not BulkEmailJob.objects.exists()


@pytest.mark.parametrize("action", ["start", "preview"])
def test_a_list_without_a_ticked_card_is_a_form_error_that_keeps_everything(client, cards, action):
    response = client.post(SEND, list_post(action=action))
    assert "Choose at least one card." in response.content.decode()
    assert_kept(
        response,
        recipients_text=[PASTED],
        subject=["Our new cards"],
        message=["Hello from Acme"],
        recipient_mode=["list"],
        card_mode=["selected"],
    )


def test_two_cards_for_a_list_keep_both_ticked(client, cards):
    response = client.post(SEND, list_post(cards=[cards[0].pk, cards[2].pk]))
    assert "Choose exactly one card" in response.content.decode()
    assert_kept(
        response,
        cards=[str(cards[0].pk), str(cards[2].pk)],
        recipients_text=[PASTED],
    )


def test_bad_lines_keep_everything(client, cards):
    response = client.post(
        SEND, list_post(cards=[cards[1].pk], recipients_text="ann@example.com\nzoë@example.com")
    )
    assert "SMTPUTF8" in response.content.decode()
    assert_kept(
        response,
        cards=[str(cards[1].pk)],
        recipients_text=["ann@example.com\nzoë@example.com"],
        subject=["Our new cards"],
        message=["Hello from Acme"],
        recipient_mode=["list"],
    )


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "Hi\nthere"])
def test_a_subject_with_a_line_break_is_a_form_error(client, cards, subject):
    response = client.post(SEND, list_post(cards=[cards[0].pk], subject=subject))
    assert "The subject must be one line of text" in response.content.decode()
    assert_kept(response, cards=[str(cards[0].pk)], message=["Hello from Acme"])


def test_an_uploaded_list_is_kept_when_something_else_is_wrong(client, cards):
    upload = SimpleUploadedFile("list.csv", "carl@example.net;Carl Müller\n".encode("cp1252"))
    response = client.post(SEND, list_post(recipients_text="", recipients_file=upload))
    assert "Choose at least one card." in response.content.decode()
    assert_kept(response, recipients_text=["carl@example.net;Carl Müller\n"])


def test_nul_in_the_pasted_list_is_a_form_error(client, cards):
    response = client.post(
        SEND, list_post(cards=[cards[0].pk], recipients_text="ann@example.com\x00")
    )
    assert "Null characters are not allowed." in response.content.decode()
    assert_kept(response, subject=["Our new cards"], cards=[str(cards[0].pk)])


def test_nul_in_an_uploaded_list_is_a_line_numbered_error(client, cards):
    upload = SimpleUploadedFile("list.csv", b"ok@example.com\r\nann\x00x@example.com\r\n")
    response = client.post(
        SEND, list_post(cards=[cards[0].pk], recipients_text="", recipients_file=upload)
    )
    assert "Line 2" in response.content.decode()
    assert "control character (U+0000)" in response.content.decode()
    assert not BulkEmailJob.objects.exists()


def test_the_preview_frames_the_email_to_an_international_address_in_ascii(client, cards):
    response = client.post(
        SEND,
        list_post(cards=[cards[0].pk], recipients_text="user@bücher.example", action="preview"),
    )
    page = response.content.decode()
    assert response.status_code == 200
    [frame] = re.findall(r'<iframe [^>]*src="([^"]+)"', page)
    email = client.get(frame)
    assert email.status_code == 200 and cards[0].full_name in email.content.decode()
    review = client.get(frame.removesuffix("email/"))
    assert "user@xn--bcher-kva.example" in review.content.decode()


def test_a_valid_list_still_creates_the_job(client, cards):
    response = client.post(SEND, list_post(cards=[cards[0].pk], recipients_text="a@x.com; b@x.com"))
    job = BulkEmailJob.objects.get()
    assert response.status_code == 302
    assert sorted(job.items.values_list("recipient_email", flat=True)) == ["a@x.com", "b@x.com"]
