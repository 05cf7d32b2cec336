"""Phone numbers parsed in the company's country (cards/phones.py), everywhere a card goes:
Google Wallet's object, the Apple pass, the vCard, the email, the public page, and the
admin's card form."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from cards import phones
from cards.models import BusinessCard, Company
from cards.vcard import build_vcard
from tests.conftest import make_user

#: (typed, company country, E.164 or "" when not dialable, what people read); the wallet
#: tests (tests/wallet/test_pass_phones.py) use the German company's ones too.
CASES = [
    # The common German notation: the "(0)" is the trunk prefix, not part of the number.
    ("+49 (0)711 / 123 45-67", "DE", "+497111234567", "0711 1234567"),
    ("0711 1234567", "DE", "+497111234567", "0711 1234567"),
    ("0049 711 1234567", "DE", "+497111234567", "0711 1234567"),
    # Another country's number, in a German company: international, so it can be dialled.
    ("+1 (555) 010-0000", "DE", "+15550100000", "+1 555-010-0000"),
    ("(202) 555-0143", "US", "+12025550143", "(202) 555-0143"),
    ("+49 711 1234567", "US", "+497111234567", "+49 711 1234567"),
    # Junk: shown as typed, never dialled.
    ("12", "DE", "", "12"),
    ("+4912", "DE", "", "+4912"),
    ("call me", "DE", "", "call me"),
    ("+1 555 0100", "DE", "", "+1 555 0100"),  # too short to dial from abroad
]


@pytest.mark.parametrize(("typed", "country", "e164", "display"), CASES)
def test_parse(typed, country, e164, display):
    number = phones.parse(typed, country)
    assert number.e164 == e164
    assert str(number) == display
    assert number.tel_uri == (f"tel:{e164}" if e164 else "")
    assert number.dialable is bool(e164)


def test_a_company_without_a_country_uses_the_platform_default(settings, db):
    company = Company.objects.create(name="Acme", slug="acme-us")
    settings.DEFAULT_PHONE_REGION = "US"
    assert phones.region_of(company) == "US"
    company.country = "AT"
    assert phones.region_of(company) == "AT"
    settings.DEFAULT_PHONE_REGION = "XX"
    company.country = ""
    with pytest.raises(ImproperlyConfigured, match="DEFAULT_PHONE_REGION"):
        phones.region_of(company)


#: The cases of a German company.
GERMAN = [case for case in CASES if case[1] == "DE"]


def german_card(typed, mobile=""):
    company, _ = Company.objects.get_or_create(
        slug="muster", defaults={"name": "Muster GmbH", "country": "DE", "language": "de"}
    )
    return BusinessCard.objects.create(
        company=company, full_name="Erika Muster", phone=typed, mobile=mobile
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("typed", "country", "e164", "display"), GERMAN)
def test_vcard(typed, country, e164, display):
    lines = build_vcard(german_card(typed)).split("\r\n")
    (tel,) = [line for line in lines if line.startswith("TEL;")]
    assert tel == f"TEL;TYPE=WORK,VOICE:{e164 or typed}"


@pytest.mark.django_db
def test_email_and_public_page_link_dialable_numbers_only(client):
    from django.template.loader import render_to_string

    card = german_card("+49 (0)711 / 123 45-67", mobile="12")
    html = render_to_string("emails/card_email.html", {"card": card, "company": card.company})
    assert '<a href="tel:+497111234567">0711 1234567</a>' in html
    assert "12</p>" in html and 'href="tel:12"' not in html
    text = render_to_string("emails/card_email.txt", {"card": card, "company": card.company})
    assert "0711 1234567" in text
    page = client.get(card.get_absolute_url()).content.decode()
    assert '<a href="tel:+497111234567">0711 1234567</a>' in page
    assert 'href="tel:12"' not in page and "<dd>12</dd>" in page


@pytest.fixture
def operator(db):
    return make_user("operator", is_staff=True, is_superuser=True)


@pytest.mark.django_db
def test_the_admin_card_form_refuses_a_number_that_cannot_be_dialled(client, operator):
    card = german_card("0711 1234567")
    client.force_login(operator)
    url = f"/admin/cards/businesscard/{card.pk}/change/"
    data = {"company": card.company_id, "full_name": card.full_name, "phone": "12"}

    response = client.post(url, data)

    assert response.status_code == 200  # the form again, with the error
    assert "is not a phone number that can be dialled" in response.content.decode()
    card.refresh_from_db()
    assert card.phone == "0711 1234567"

    # A number stored before (an import) does not block another edit; it is pointed out.
    BusinessCard.objects.filter(pk=card.pk).update(phone="12")
    response = client.post(url, {**data, "full_name": "Erika Beispiel"}, follow=True)
    card.refresh_from_db()
    assert card.full_name == "Erika Beispiel"
    messages = [str(m) for m in response.context["messages"]]
    assert any("cannot be dialled" in m for m in messages), messages
