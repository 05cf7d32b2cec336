"""Company, membership of users in companies, and the business card itself."""

import uuid
import zoneinfo
from email.utils import formataddr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _


def validate_time_zone(value):
    """A company's time zone must be an IANA name this machine knows (e.g. Europe/Berlin)."""
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            _("%(zone)s is not a known time zone; use an IANA name such as Europe/Berlin."),
            params={"zone": value},
        )


def validate_country(value):
    """A company's country must be one whose phone numbers phonenumbers knows."""
    import phonenumbers

    if value and value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(
            _("%(country)s is not a known country code; use an ISO 3166 code such as DE."),
            params={"country": value},
        )


validate_brand_color = RegexValidator(
    r"^#[0-9a-fA-F]{6}$", _("Enter a colour as #RRGGBB, such as #142850.")
)


class Company(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    # The language of the company's pages, emails' boilerplate and wallet pass labels;
    # a user's browser language is only the fallback where no company applies.
    language = models.CharField(
        max_length=8,
        choices=[("en", "English"), ("de", "Deutsch")],
        default="en",
        db_default="en",
    )
    # The country of its people's phone numbers typed without a country code
    # (cards/phones.py); empty: settings.DEFAULT_PHONE_REGION.
    country = models.CharField(
        _("country"),
        max_length=2,
        blank=True,
        default="",
        db_default="",
        validators=[validate_country],
        help_text=_(
            "ISO 3166 code such as DE, AT or CH: the country of phone numbers typed "
            "without a country code. Empty: the platform's default."
        ),
    )
    # What the wallet passes look like (wallet/branding.py): the same colour on Apple and
    # Google passes, the logo beside the company name. Changing either queues every
    # issued pass of the company for an update (wallet/autosync.py).
    brand_color = models.CharField(
        _("brand colour"),
        max_length=7,
        blank=True,
        default="",
        db_default="",
        validators=[validate_brand_color],
        help_text=_("The passes' background, as #RRGGBB. Empty: the platform's colour."),
    )
    logo = models.ImageField(
        _("logo"),
        upload_to="company-logos/",
        blank=True,
        default="",
        db_default="",
        help_text=_(
            "Shown on the wallet passes (PNG with a transparent background works best). "
            "Empty: the company's initials."
        ),
    )
    # Times on the company's pages are shown in this zone, with the zone named.
    time_zone = models.CharField(
        max_length=64, default="UTC", db_default="UTC", validators=[validate_time_zone]
    )
    # Where a recipient's reply to a card email goes. By default to the card's holder:
    # the email introduces them, and without a Reply-To a reply would reach the sending
    # platform's address, which nobody reads.
    reply_to = models.CharField(
        "Reply-To of card emails",
        max_length=10,
        choices=[
            ("holder", "The card holder's address"),
            ("fixed", "A fixed address"),
            ("none", "None (replies go to the sender address)"),
        ],
        default="holder",
        db_default="holder",
        help_text=(
            "The card holder's address when the card has one (else the fixed address "
            "below, if set), always the fixed address, or no Reply-To header."
        ),
    )
    reply_to_address = models.EmailField(
        "fixed Reply-To address",
        blank=True,
        default="",
        db_default="",
        help_text="Used for 'A fixed address', and for cards without an email address.",
    )
    # German business email must carry the sender's mandatory details, and the CSA
    # whitelist asks for a full imprint: at the foot of every card email.
    imprint = models.TextField(
        "imprint",
        blank=True,
        default="",
        db_default="",
        help_text=(
            "Legal details at the foot of every card email: legal name and form, address, "
            "register court and number, managing directors, VAT id."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "companies"

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        if self.reply_to == "fixed" and not self.reply_to_address:
            raise ValidationError(
                {"reply_to_address": _("Enter the address replies should go to.")}
            )

    def reply_to_for(self, card):
        """The Reply-To addresses of this card's emails: [] or one address."""
        if self.reply_to == "holder" and card.email:
            name = " ".join(card.full_name.split())
            return [formataddr((name, card.email)) if name else card.email]
        if self.reply_to in ("holder", "fixed") and self.reply_to_address:
            return [self.reply_to_address]
        return []


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", _("Admin")
        MEMBER = "member", _("Member")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [
            # One company per user keeps tenancy unambiguous for every view.
            models.UniqueConstraint(fields=["user"], name="membership_one_company_per_user"),
        ]

    def __str__(self):
        return f"{self.user} ({self.role}) @ {self.company}"

    @property
    def is_admin(self):
        return self.role == self.Role.ADMIN


class BusinessCard(models.Model):
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="cards")
    # The public id is what appears in links, QR codes and wallet passes; the integer
    # primary key never leaves the server.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    full_name = models.CharField(max_length=200)
    job_title = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=50, blank=True)
    mobile = models.CharField(max_length=50, blank=True)
    website = models.URLField(blank=True)
    address = models.TextField(blank=True)
    photo = models.ImageField(upload_to="card-photos/", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["full_name", "id"]
        indexes = [models.Index(fields=["company", "full_name"], name="card_company_name_idx")]

    def __str__(self):
        return self.full_name

    def get_absolute_url(self):
        return reverse("cards:public", kwargs={"public_id": self.public_id})

    @property
    def public_url(self):
        return settings.SITE_URL + self.get_absolute_url()

    @property
    def phone_number(self):
        """The phone as a cards.phones.Phone: E.164 for links, the display form."""
        from .phones import card_phone

        return card_phone(self, "phone")

    @property
    def mobile_number(self):
        from .phones import card_phone

        return card_phone(self, "mobile")

    @property
    def vcard_url(self):
        return settings.SITE_URL + reverse("cards:vcard", kwargs={"public_id": self.public_id})


class SignInThrottle(models.Model):
    """Failed sign-ins counted per client address (whatever the usernames) and per
    username (from any address), with lockouts that grow; see config/signin.py.

    One row per key ("address:203.0.113.7", "username:admin"); rows quiet for a day are
    forgotten, so the table holds only recent trouble.
    """

    key = models.CharField(max_length=200, unique=True)
    #: failures since the last lockout (or since the row was last forgotten)
    failures = models.PositiveIntegerField(default=0)
    #: lockouts so far: each lasts twice as long as the one before
    lockouts = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField()

    class Meta:
        verbose_name = "sign-in throttle"
        indexes = [
            # Serves the clean-up of quiet rows: ... WHERE last_failure_at < ?.
            models.Index(fields=["last_failure_at"], name="signin_throttle_last_idx"),
        ]

    def __str__(self):
        return f"{self.key}: {self.failures} failure(s), {self.lockouts} lockout(s)"
