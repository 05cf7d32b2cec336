"""Load a demo company with members, cards and a bulk email job (safe to run again).

For development only: its users' password is public, so it refuses to run with DEBUG off
unless told --allow-production, and it never changes a user that already exists (a real
`admin` keeps its password and rights).
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from cards.demo import DEMO_PASSWORD
from cards.models import BusinessCard, Company, Membership
from emails.models import BulkEmailJob
from emails.services import create_email_job

DEMO_CARDS = [
    ("Ada Lovelace", "Head of Engineering", "ada@example.com", "+44 20 7946 0001"),
    ("Grace Hopper", "Principal Engineer", "grace@example.com", "+1 202 555 0102"),
    ("Alan Turing", "Research Lead", "alan@example.com", "+44 20 7946 0003"),
    ("Katherine Johnson", "Flight Dynamics", "katherine@example.com", "+1 757 555 0104"),
    ("Edsger Dijkstra", "Architect", "edsger@example.com", "+31 20 555 0105"),
]


class Command(BaseCommand):
    help = (
        "Create the demo company 'Acme Cards' with its company admin 'admin' and member "
        "'member', the platform operator 'operator' (staff, no company: every company's jobs at "
        "/background-jobs/ and the Django admin at /admin/), all "
        f"with password '{DEMO_PASSWORD}', and five cards; unless an email job is already "
        "queued, two email jobs (each card to its holder, and one card to a list of 25 "
        "contacts); and, when a wallet platform is configured and no sync is queued, a wallet "
        "sync of every card. Users that already exist are left as they are. Refuses to run "
        "with DEBUG off (production) unless given --allow-production."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help=(
                "Run although DEBUG is off. The demo users get a public password: "
                "`check --deploy` warns while they have it."
            ),
        )

    def handle(self, *args, **options):
        if not settings.DEBUG and not options["allow_production"]:
            raise CommandError(
                "load_demo is for development: DEBUG is off, so this looks like production, "
                f"and the demo users' password ('{DEMO_PASSWORD}') is public. Run it with "
                "DJANGO_DEBUG=1 on a development copy, or pass --allow-production if you "
                "really mean to."
            )
        User = get_user_model()
        with transaction.atomic():
            company, _ = Company.objects.get_or_create(slug="acme", defaults={"name": "Acme Cards"})
            for username, role in [
                ("admin", Membership.Role.ADMIN),
                ("member", Membership.Role.MEMBER),
            ]:
                user, created = self._demo_user(username, staff=False)
                if created:
                    Membership.objects.create(user=user, company=company, role=role)
            # The Django admin sees every company, so it belongs to the platform's operator,
            # never to a company's admin (who works in the app, scoped to the company).
            self._demo_user("operator", staff=True)
            for name, title, email, phone in DEMO_CARDS:
                BusinessCard.objects.get_or_create(
                    company=company,
                    email=email,
                    defaults={
                        "full_name": name,
                        "job_title": title,
                        "phone": phone,
                        "website": "https://example.com",
                    },
                )
        self.stdout.write(
            f"Demo company 'Acme Cards' ready. Users (password {DEMO_PASSWORD}): admin, the "
            "company admin, and member sign in to the app (/background-jobs/); operator, the "
            "platform operator, sees every company's jobs there and signs in to the Django "
            "admin (/admin/)."
        )
        cards = list(company.cards.all())
        self._queue_wallet_job(company)
        if BulkEmailJob.objects.active().filter(company=company).exists():
            self.stdout.write("Demo data present; an email job is already queued.")
            return
        admin = User.objects.get(username="admin")
        holders = create_email_job(
            company=company,
            cards=cards,
            subject="My digital business card",
            message="Hello! Here is my card.",
            created_by=admin,
        )
        contacts = "\n".join(f"Contact {n} <contact{n}@example.org>" for n in range(1, 26))
        listed = create_email_job(
            company=company,
            cards=cards[:1],
            subject="Nice to meet you",
            message="Great meeting you at the fair.",
            recipients_text=contacts,
            created_by=admin,
        )
        self.stdout.write(
            f"Email jobs {holders.pk} ({holders.total_items} recipients) and {listed.pk} "
            f"({listed.total_items} recipients) queued."
        )

    def _demo_user(self, username, staff):
        """(user, created): the demo user, created with the demo password if missing. An
        existing user of that name is never changed: on a real site `admin` may be a real
        person, whose password and rights are theirs."""
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is not None:
            self.stdout.write(f"User '{username}' exists already; left unchanged.")
            return user, False
        user = User(
            username=username,
            email=f"{username}@example.com",
            is_staff=staff,
            is_superuser=staff,
        )
        user.set_password(DEMO_PASSWORD)
        user.save()
        return user, True

    def _queue_wallet_job(self, company):
        """Queue a wallet sync of every demo card when a wallet platform is configured."""
        from wallet.models import BulkWalletApiJob
        from wallet.services import create_wallet_job, platform_status

        User = get_user_model()

        if BulkWalletApiJob.objects.active().filter(company=company).exists():
            self.stdout.write("A wallet sync job is already queued.")
        elif any(entry["configured"] for entry in platform_status().values()):
            job = create_wallet_job(company, created_by=User.objects.get(username="admin"))
            self.stdout.write(f"Wallet sync job {job.pk} ({job.total_items} cards) queued.")
        else:
            self.stdout.write(
                "No wallet job queued: no wallet platform is configured "
                "(run `manage.py make_dev_certificates` for a local Apple Wallet setup)."
            )
