"""The "Send cards by email" page: choose cards, recipients, subject and message, preview, start.

Everything is validated before anything is created: emails.services.create_email_job
raises RecipientListError with every bad line, and the page lists them with their
line numbers so the whole list can be fixed at once.

A pasted list arrives like an uploaded file (emails/uploads.py), so a list of any size
up to the most a job takes never meets Django's 2.5 MB limit on form fields, and a
bigger one is refused on the form, which keeps everything else.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.functional import lazy
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from bulkjobs.kinds import get_kind
from bulkjobs.web import queue
from cards.forms import CardSelectionForm
from cards.tenancy import company_admin_required, current_company

from . import uploads
from .message import CardEmail
from .models import BulkEmailJob, BulkEmailJobItem
from .recipients import RecipientListError, decode_upload, more_bad_lines, parse_recipients
from .services import SUBJECT_FORBIDDEN, SUBJECT_ON_ONE_LINE, create_email_job

# Escaped when shown, in the language of that moment.
escape_lazy = lazy(escape, str)


class SendForm(CardSelectionForm):
    TO_HOLDERS = "holders"
    TO_LIST = "list"

    recipient_mode = forms.ChoiceField(
        label=gettext_lazy("Recipients"),
        choices=[
            (TO_HOLDERS, gettext_lazy("Each card to its holder's email address")),
            (TO_LIST, gettext_lazy("One card to a list of addresses (paste or upload)")),
        ],
        initial=TO_HOLDERS,
        widget=forms.RadioSelect,
    )
    recipients_text = forms.CharField(
        label=gettext_lazy("Recipient list"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        # Help texts are rendered as HTML, so the angle brackets must be escaped.
        help_text=escape_lazy(
            gettext_lazy(
                "One per line: jane@example.com, Jane Doe <jane@example.com>, or a CSV row "
                "jane@example.com,Jane Doe. Blank lines and lines starting with # are ignored."
            ),
        ),
    )
    recipients_file = forms.FileField(
        label=gettext_lazy("…or upload a CSV file"),
        required=False,
        help_text=gettext_lazy(
            "Replaces the pasted list; one recipient per row. CSV UTF-8, UTF-16 or "
            "Windows (Excel) encoding."
        ),
    )
    # UWG section 7: a list's recipients must have agreed to receive the card; the sender
    # says so, and the job keeps who did and when.
    consent = forms.BooleanField(
        label=gettext_lazy("The recipients on this list agreed to receive my card by email."),
        required=False,
    )
    subject = forms.CharField(label=gettext_lazy("Subject"), max_length=200)
    message = forms.CharField(
        label=gettext_lazy("Message"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=gettext_lazy("Shown above the card in the email."),
    )

    def __init__(self, *args, oversize=(), **kwargs):
        super().__init__(*args, **kwargs)
        #: the fields whose list was larger than uploads.max_list_bytes() (not received)
        self.oversize = set(oversize)

    def clean_recipients_text(self):
        if "recipients_text" in self.oversize:
            raise ValidationError(
                too_big(
                    _(
                        "The pasted list is larger than %(size)s MB, the most one job takes "
                        "(%(count)s recipients); split it and send each part as a job of its "
                        "own."
                    )
                )
            )
        return self.cleaned_data["recipients_text"]

    def clean_recipients_file(self):
        if "recipients_file" in self.oversize:
            raise ValidationError(
                too_big(
                    _(
                        "The file is larger than %(size)s MB, the most one job takes "
                        "(%(count)s recipients); split it and send each part as a job of its "
                        "own."
                    )
                )
            )
        upload = self.cleaned_data.get("recipients_file")
        if not upload:
            return None
        return decode_upload(upload.read())

    def clean_subject(self):
        subject = self.cleaned_data["subject"]
        if SUBJECT_FORBIDDEN.search(subject):
            raise ValidationError(SUBJECT_ON_ONE_LINE)
        return subject

    def clean(self):
        data = super().clean()
        if data.get("recipient_mode") == self.TO_LIST:
            text = data.get("recipients_file") or data.get("recipients_text") or ""
            data["recipients"] = text
            if not text.strip() and not self.oversize:
                self.add_error("recipients_text", _("Paste a list of addresses or upload a file."))
            # A refused card selection is no longer in cleaned_data.
            if len(data.get("cards") or []) > 1:
                self.add_error(
                    "cards", _("Choose exactly one card to send to a list of addresses.")
                )
            if not data.get("consent"):
                self.add_error(
                    "consent", _("Confirm that the recipients agreed to receive the card.")
                )
        else:
            data["recipients"] = None
        return data


def too_big(message):
    """`message` with the most a list may take, in MB (%(size)s) and recipients (%(count)s)."""
    size = uploads.max_list_bytes() / 10**6
    return message % {
        "size": number_format(size if size % 1 else int(size)),
        "count": number_format(settings.EMAIL_MAX_RECIPIENTS, force_grouping=True),
    }


def _preview(company, data):
    """The email as the first recipient would get it (nothing is saved or sent).

    Raises RecipientListError or ValidationError for a list that could not be sent.
    """
    card = data["cards"][0]
    job = BulkEmailJob(company=company, subject=data["subject"], message=data["message"])
    if data["recipients"] is None:
        email, name, typed_email = card.email, card.full_name, ""
    else:
        recipients, _duplicates = parse_recipients(
            data["recipients"], max_recipients=settings.EMAIL_MAX_RECIPIENTS
        )
        if not recipients:
            raise ValidationError(_("The recipient list is empty."))
        first = recipients[0]
        email, name, typed_email = first.email, first.name, first.typed_email
    item = BulkEmailJobItem(job=job, card=card, recipient_email=email, recipient_name=name)
    card_email = CardEmail(job, card)
    message = card_email.for_recipient(item)
    return {
        "card": card,
        "to": message.to[0],
        "typed_to": typed_email,
        "subject": message.subject,
        "text": message.body,
        "html": message.alternatives[0][0],
        "attachment": card_email.vcard_name,
    }


@csrf_exempt  # checked by _send, once the upload handlers are set (emails/uploads.py)
@require_http_methods(["GET", "POST"])
@company_admin_required
def send(request):
    if request.method == "POST":
        uploads.install(request, "recipients_text", ["recipients_text", "recipients_file"])
    return _send(request)


def _posted(request):
    """The form's data and files, with a pasted list (received as a file) as text again."""
    data, files = request.POST, request.FILES
    pasted = files.get("recipients_text")
    if pasted is not None:
        data = data.copy()
        # The page is UTF-8, and so is what browsers send from it.
        data["recipients_text"] = pasted.read().decode("utf-8", errors="replace")
        files = files.copy()
        del files["recipients_text"]
    return data, files


@csrf_protect
def _send(request):
    company = current_company(request)
    context = {"bad_lines": None, "preview": None}
    if request.method == "GET":
        form = SendForm(company=company)
    else:
        data, files = _posted(request)
        form = SendForm(data, files, company=company, oversize=request.oversize_lists)
        valid = form.is_valid()
        uploaded_text = form.cleaned_data.get("recipients_file")
        if uploaded_text:
            # An upload does not survive a re-render, so keep its text in the form
            # whatever else was wrong.
            form.data = form.data.copy()
            form.data["recipients_text"] = uploaded_text
        if valid:
            data = form.cleaned_data
            try:
                if request.POST.get("action") == "preview":
                    context["preview"] = _preview(company, data)
                else:
                    job = create_email_job(
                        company=company,
                        cards=data["cards"],
                        subject=data["subject"],
                        message=data["message"],
                        recipients_text=data["recipients"],
                        created_by=request.user,
                        consent_confirmed_by=request.user if data["recipients"] else None,
                    )
                    created = ngettext(
                        "Email job #%(job)s created with %(count)s recipient.",
                        "Email job #%(job)s created with %(count)s recipients.",
                        job.total_items,
                    ) % {"job": job.pk, "count": job.total_items}
                    # Where it stands in the company's queue, as its page says.
                    waits = queue.wait_of_new_job(get_kind("email"), job)
                    messages.success(request, f"{created} {waits}")
                    return redirect(reverse("bulkjobs:job_detail", args=["email", job.pk]))
            except RecipientListError as exc:
                context["bad_lines"] = exc.bad_lines
                context["bad_line_count"] = exc.count
                if exc.count > len(exc.bad_lines):
                    context["more_bad_lines"] = more_bad_lines(exc.count - len(exc.bad_lines))
                context["bad_lines_in_cards"] = data["recipients"] is None
            except ValidationError as exc:
                for text in exc.messages:
                    form.add_error(None, text)
    context.update(
        form=form,
        card_count=form.fields["cards"].queryset.count(),
    )
    status = 200 if request.method == "GET" or not (form.errors or context["bad_lines"]) else 400
    return render(request, "emails/send.html", context, status=status)
