"""Big recipient lists: a paste beyond Django's 2.5 MB limit on form fields is taken like an
upload, a list beyond the most a job takes is refused on the form, which keeps everything
else, and a job is created with all its items or not at all. (Times: bench/bench_big_list.py.)
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError, connection
from django.test import Client
from django.test.client import BOUNDARY, encode_multipart
from django.urls import reverse

from bulkjobs.models import Status
from bulkjobs.models.inserts import insert_rows
from cards.models import Membership
from emails.models import BulkEmailJob, BulkEmailJobItem
from emails.recipients import RecipientListError
from emails.services import create_email_job
from emails.uploads import _Renaming
from tests.conftest import make_cards, make_user
from tests.emails.test_send_page import form_state, list_post

pytestmark = pytest.mark.django_db

SEND = reverse("emails:send")


@pytest.fixture
def client(company):
    client = Client()
    client.force_login(make_user("owner", company, Membership.Role.ADMIN))
    return client


@pytest.fixture
def card(company):
    return make_cards(company, 1)[0]


def confirmed(client, response):
    """Confirm the review a send page's answer redirected to."""
    assert response.status_code == 302 and "/review/" in response["Location"]
    confirm = response["Location"] + "confirm/"
    answer = client.post(confirm)
    assert answer.status_code == 302 and "/background-jobs/" in answer["Location"]
    return answer


def addresses(count, start=0):
    return "".join(f"recipient{n}@example.com,Recipient {n}\n" for n in range(start, start + count))


def test_100000_pasted_addresses_make_a_job_of_100000_items(client, card):
    text = addresses(100_000)
    assert len(text.encode()) > 2.5 * 2**20  # Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    response = client.post(SEND, list_post(cards=[card.pk], recipients_text=text))
    # Above the review threshold: reviewed first, then confirmed.
    assert not BulkEmailJob.objects.exists()
    confirmed(client, response)
    job = BulkEmailJob.objects.get()
    assert job.total_items == 100_000
    assert job.items.count() == 100_000
    assert job.items.filter(recipient_email="recipient99999@example.com").exists()


def test_a_paste_is_not_held_to_djangos_limit_on_form_fields(client, card, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    response = client.post(SEND, list_post(cards=[card.pk], recipients_text=addresses(300)))
    confirmed(client, response)
    assert BulkEmailJob.objects.get().items.count() == 300


def test_a_paste_with_something_else_wrong_is_kept_whatever_its_size(client, card, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    text = addresses(300)
    response = client.post(SEND, list_post(recipients_text=text))  # no card ticked
    assert response.status_code == 400
    assert "Choose at least one card." in response.content.decode()
    assert form_state(response)["recipients_text"] == [text]


def test_a_paste_beyond_the_most_a_job_takes_keeps_the_form_and_says_what_to_do(
    client, card, settings
):
    settings.EMAIL_MAX_RECIPIENTS = 100  # lists of up to 10,000 bytes
    response = client.post(
        SEND, list_post(cards=[card.pk], recipients_text=addresses(400), message="Hi there")
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert (
        "The pasted list is larger than 0.01 MB, the most one job takes (100 recipients); "
        "split it and send each part as a job of its own." in page
    )
    assert "Paste a list of addresses or upload a file." not in page
    state = form_state(response)
    assert state["cards"] == [str(card.pk)]
    assert state["recipient_mode"] == ["list"]
    assert state["subject"] == ["Our new cards"]
    assert state["message"] == ["Hi there"]
    assert not BulkEmailJob.objects.exists()


def test_an_upload_beyond_the_most_a_job_takes_keeps_the_form_and_says_what_to_do(
    client, card, settings
):
    settings.EMAIL_MAX_RECIPIENTS = 100
    upload = SimpleUploadedFile("list.csv", addresses(400).encode())
    response = client.post(
        SEND, list_post(cards=[card.pk], recipients_text="", recipients_file=upload)
    )
    assert response.status_code == 400
    assert "The file is larger than 0.01 MB" in response.content.decode()
    assert form_state(response)["subject"] == ["Our new cards"]
    assert not BulkEmailJob.objects.exists()


def test_more_recipients_than_a_job_takes_are_refused_and_nothing_is_created(
    client, card, settings
):
    settings.EMAIL_MAX_RECIPIENTS = 5
    response = client.post(SEND, list_post(cards=[card.pk], recipients_text=addresses(6)))
    assert response.status_code == 400
    assert "The job would have more than 5 recipients" in response.content.decode()
    assert not BulkEmailJob.objects.exists()
    # Duplicates do not count.
    text = addresses(5) + addresses(5)
    response = client.post(SEND, list_post(cards=[card.pk], recipients_text=text))
    assert response.status_code == 302
    assert BulkEmailJob.objects.get().total_items == 5


def test_the_holders_of_more_cards_than_a_job_takes_are_refused(company, settings):
    settings.EMAIL_MAX_RECIPIENTS = 2
    cards = make_cards(company, 3)
    with pytest.raises(Exception, match="more than 2 recipients"):
        create_email_job(company=company, cards=cards, subject="Hello")
    assert not BulkEmailJob.objects.exists()


def test_the_send_page_still_checks_the_csrf_token(company, card):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("owner", company, Membership.Role.ADMIN))
    data = list_post(cards=[card.pk], recipients_text=addresses(3))
    assert client.post(SEND, data).status_code == 403
    client.get(SEND)
    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value
    assert client.post(SEND, data).status_code == 302
    assert BulkEmailJob.objects.get().total_items == 3


def test_the_first_100_bad_lines_are_listed_and_the_others_counted(client, card):
    text = "".join(f"bad-address-{n}\n" for n in range(150))
    response = client.post(SEND, list_post(cards=[card.pk], recipients_text=text))
    page = response.content.decode()
    assert response.status_code == 400
    assert "150 lines of the list have problems:" in page
    assert "bad-address-99<" in page and "bad-address-100<" not in page
    assert "…and 50 more lines with problems." in page
    with pytest.raises(RecipientListError) as caught:
        create_email_job(company=card.company, cards=[card], subject="Hi", recipients_text=text)
    assert (len(caught.value.bad_lines), caught.value.count) == (100, 150)
    assert caught.value.messages[-1] == "…and 50 more lines with problems."


def abort_insert_of(address):
    """A trigger that makes the database refuse the item for `address`: a real failure in
    the middle of a job's INSERTs."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER refuse_item BEFORE INSERT ON bulk_email_job_items "
                f"WHEN NEW.recipient_email = '{address}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        elif connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_item() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.recipient_email = '{address}' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_item BEFORE INSERT ON bulk_email_job_items "
                "FOR EACH ROW EXECUTE FUNCTION refuse_item()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_item BEFORE INSERT ON bulk_email_job_items FOR EACH ROW "
                f"BEGIN IF NEW.recipient_email = '{address}' THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF; END"
            )


@pytest.mark.django_db(transaction=True)
def test_a_job_is_created_with_all_its_items_or_not_at_all(company, card):
    # The 1,800th item fails, after the job and several statements' items were inserted.
    abort_insert_of("recipient1799@example.com")
    try:
        with pytest.raises(DatabaseError):
            create_email_job(
                company=company, cards=[card], subject="Hi", recipients_text=addresses(2_000)
            )
        assert not BulkEmailJob.objects.exists()
        assert not BulkEmailJobItem.objects.exists()
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("DROP FUNCTION refuse_item() CASCADE")
            else:
                cursor.execute("DROP TRIGGER refuse_item")


def test_inserted_items_get_every_default_the_orm_would_give(company, card):
    job = create_email_job(
        company=company, cards=[card], subject="Hi", recipients_text="Ann Bee <ann@example.com>"
    )
    insert_rows(
        BulkEmailJobItem,
        ("job", "card", "recipient_email", "recipient_name"),
        [(job.pk, None, "bob@example.com", "Bob")],
    )
    by_orm = BulkEmailJobItem.objects.create(job=job, recipient_email="carl@example.com")
    first, second, third = job.items.order_by("id")
    assert (first.card, first.recipient_email, first.recipient_name) == (
        card,
        "ann@example.com",
        "Ann Bee",
    )
    assert (second.card, second.recipient_name) == (None, "Bob")
    for item in (first, second, third):
        assert item.status == Status.PENDING == by_orm.status
        assert (item.reason, item.attempts, item.attempts_before_retry) == ("", 0, 0)
        assert (item.next_attempt_at, item.processed_at) == (None, None)
        assert item.attempt_log == [] == by_orm.attempt_log
    assert job.total_items == 1


class Trickle:
    """A request body that arrives `size` bytes per read, as from a slow client."""

    def __init__(self, data, size):
        self.data, self.size = data, size

    def read(self, size=-1):
        chunk, self.data = self.data[: self.size], self.data[self.size :]
        return chunk


@pytest.mark.parametrize("size", [1, 7, 64, 65_536])
def test_the_pasted_part_is_renamed_however_the_body_arrives(size):
    body = encode_multipart(
        BOUNDARY, {"subject": "Hi", "recipients_text": "a@example.com\n" * 50, "message": ""}
    )
    header = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="recipients_text"\r\n'.encode()
    renamed = header[:-2] + b'; filename="pasted-list.txt"\r\n'
    assert body.count(header) == 1
    stream = _Renaming(Trickle(body, size), header, renamed)
    received = b"".join(iter(lambda: stream.read(size), b""))
    assert received == body.replace(header, renamed)
