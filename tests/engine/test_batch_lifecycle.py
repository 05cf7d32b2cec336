"""A batch's handler is opened and closed by the engine, also when opening fails halfway."""

import socket
import threading

import pytest
from django.db import DatabaseError, connection

from bulkjobs import engine
from bulkjobs.models import Status
from emails import connections
from emails.models import EmailSuppression
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


class BareSmtpServer:
    """A minimal SMTP server on loopback that notes when its client hangs up."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connected = threading.Event()
        self.hung_up = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.listener.accept()
        self.connected.set()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 bare ESMTP\r\n")
            for line in lines:
                command = line[:4].upper()
                if command in (b"EHLO", b"HELO"):
                    conn.sendall(b"250 bare\r\n")
                elif command == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    break
                else:
                    conn.sendall(b"250 OK\r\n")
        self.hung_up.set()

    def close(self):
        self.listener.close()


def test_the_mail_connection_is_closed_when_opening_the_batch_fails_after_connecting(
    company, email_kind, settings
):
    server = BareSmtpServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    job = make_email_job(company, 3)
    suppression_table = EmailSuppression._meta.db_table

    def fail_the_suppression_lookup(execute, sql, params, many, context):
        if suppression_table in sql:
            raise DatabaseError("the database went away")
        return execute(sql, params, many, context)

    claim = engine.claim_next_job(email_kind, company.pk)
    try:
        with connection.execute_wrapper(fail_the_suppression_lookup):
            engine.process_one_batch(claim, 50)
    finally:
        claim.release()
        server.close()
    assert server.connected.is_set()
    # Greeted and idle, it is kept for the next batch (emails/connections.py), and
    # closed with the others kept: never left behind.
    assert len(connections.pool) == 1
    connections.pool.close_all()
    assert server.hung_up.wait(5), "the SMTP connection opened for the batch was left open"
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    assert "the database went away" in job.reason
    assert set(job.items.values_list("status", "attempts")) == {(Status.PENDING, 0)}
