"""The public card page and the vCard download."""

import uuid

import pytest

from cards.vcard import build_vcard

pytestmark = pytest.mark.django_db


def test_the_public_page_shows_the_card(client, card):
    response = client.get(card.get_absolute_url())
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "Ada Lovelace",
        "Head of Engineering",
        "Acme",
        "ada@example.com",
        "+44 7700 900001",
    ):
        assert text in html
    assert f"/c/{card.public_id}/vcard.vcf" in html


def test_an_unknown_card_is_404(client):
    assert client.get(f"/c/{uuid.uuid4()}/").status_code == 404
    assert client.get(f"/c/{uuid.uuid4()}/vcard.vcf").status_code == 404


def test_the_vcard_download(client, card):
    response = client.get(f"/c/{card.public_id}/vcard.vcf")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/vcard; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="ada-lovelace.vcf"'
    lines = response.content.decode().split("\r\n")
    assert lines[:2] == ["BEGIN:VCARD", "VERSION:3.0"]
    assert "N:Lovelace;Ada;;;" in lines
    assert "TEL;TYPE=CELL:+447700900001" in lines  # E.164: dialled from anywhere
    assert "ADR;TYPE=WORK:;;1 Analytical Way\\nLondon;;;;" in lines
    assert lines[-2:] == ["END:VCARD", ""]


def test_vcard_text_values_are_escaped(card):
    card.full_name = "Smith, Jane; Jr."
    card.job_title = "R&D, Lead"
    vcard = build_vcard(card)
    assert "FN:Smith\\, Jane\\; Jr." in vcard
    assert "TITLE:R&D\\, Lead" in vcard


def test_the_home_page_leads_to_the_dashboard(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/background-jobs/"
