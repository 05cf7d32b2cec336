"""What DKIM signing and header folding cost per card email (CPU, no SMTP).

Builds N recipients' messages of one job from the prebuilt bytes (what a batch does,
emails/message.py) three ways: unsigned, signed by the app (emails/signing.py), and, for
comparison, the unsigned bytes signed by dkimpy's own sign(); once with ASCII names and
once with long umlaut names (their To is folded into encoded words). Prints ms per email.
The key is a fresh 2048-bit RSA key in a temporary directory.

    .venv/bin/python bench/bench_dkim.py [--emails 2000]

Uses its own SQLite file var/bench-dkim.sqlite3 (flushed).
"""

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=2000)
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = f"sqlite:///{ROOT / 'var' / 'bench-dkim.sqlite3'}"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["LOG_FILE"] = str(ROOT / "var" / "log" / "bench.log")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    import django

    django.setup()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)

    with tempfile.TemporaryDirectory() as folder:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_file = Path(folder) / "dkim.pem"
        key_file.write_bytes(pem)
        settings.DEFAULT_FROM_EMAIL = "Business Cards <cards@cards-platform.de>"
        print(f"{args.emails} emails of one job, ms of CPU per email (lower is better)")
        for label, name in (("ASCII names", "Jane Doe"), ("umlaut names", "Jürgen Müßig " * 8)):
            items, card_email = make_job(args.emails, name)
            settings.DKIM_DOMAIN = settings.DKIM_SELECTOR = settings.DKIM_PRIVATE_KEY_FILE = ""
            unsigned, messages = timed(card_email(), items)
            settings.DKIM_DOMAIN, settings.DKIM_SELECTOR = "cards-platform.de", "bulk"
            settings.DKIM_PRIVATE_KEY_FILE = str(key_file)
            signed, _ = timed(card_email(), items)
            dkimpy = timed_dkimpy(messages, pem)
            print(
                f"  {label:13} unsigned {unsigned:.3f}  signed by the app {signed:.3f} "
                f"(+{signed - unsigned:.3f})  dkimpy sign() alone {dkimpy:.3f}"
            )


def make_job(count, name):
    from cards.models import BusinessCard, Company
    from emails.message import CardEmail
    from emails.services import create_email_job

    company = Company.objects.create(
        name=f"Bücher & Söhne {secrets.token_hex(3)}",
        slug=secrets.token_hex(6),
        language="de",
        imprint="Bücher & Söhne GmbH\nHauptstraße 1, 10115 Berlin\nHRB 12345 B",
    )
    card = BusinessCard.objects.create(
        company=company, full_name="Ada Lovelace", email="ada@example.com", phone="+49 30 1"
    )
    lines = "\n".join(f"{name} {n} <r{n}@example.net>" for n in range(count))
    job = create_email_job(
        company=company,
        cards=[card],
        subject="Unsere Visitenkarte – Bücher & Söhne",
        message="Guten Tag,\nhier ist meine Karte.",
        recipients_text=lines,
    )
    items = list(job.items.select_related("card__company"))
    return items, lambda: CardEmail(job, card, {"apple": "", "google": ""})


def timed(card_email, items):
    card_email.prebuilt_for(items[0])  # the prebuild, once per card and batch
    started = time.process_time()
    messages = [card_email.prebuilt_for(item).message().as_bytes(linesep="\r\n") for item in items]
    return (time.process_time() - started) * 1000 / len(items), messages


def timed_dkimpy(messages, pem):
    import dkim

    sample = messages[:200]
    started = time.process_time()
    for data in sample:
        dkim.sign(
            data,
            b"bulk",
            b"cards-platform.de",
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[b"from", b"to", b"subject", b"list-unsubscribe"],
        )
    return (time.process_time() - started) * 1000 / len(sample)


if __name__ == "__main__":
    main()
