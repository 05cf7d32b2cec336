"""The "Send cards by email" page: choose cards, recipients, subject and message, preview, start.

Everything is validated before anything is created: emails.services.create_email_job
raises RecipientListError with every bad line, and the page lists them with their
line numbers so the whole list can be fixed at once.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import lazy
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods

from cards.forms import CardSelectionForm
from cards.tenancy import company_admin_required, current_company

from .message import CardEmail
from .models import BulkEmailJob, BulkEmailJobItem
from .recipients import RecipientListError, decode_upload, parse_recipients
from .services import SUBJECT_FORBIDDEN, SUBJECT_ON_ONE_LINE, create_email_job

#: Uploaded recipient files larger than this are refused before they are read.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


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
    subject = forms.CharField(label=gettext_lazy("Subject"), max_length=200)
    message = forms.CharField(
        label=gettext_lazy("Message"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=gettext_lazy("Shown above the card in the email."),
    )

    def clean_recipients_file(self):
        upload = self.cleaned_data.get("recipients_file")
        if not upload:
            return None
        if upload.size > MAX_UPLOAD_BYTES:
            raise ValidationError(_("The file is larger than 5 MB."))
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
            if not text.strip():
                self.add_error("recipients_text", _("Paste a list of addresses or upload a file."))
            # A refused card selection is no longer in cleaned_data.
            if len(data.get("cards") or []) > 1:
                self.add_error(
                    "cards", _("Choose exactly one card to send to a list of addresses.")
                )
        else:
            data["recipients"] = None
        return data


def _preview(company, data):
    """The email as the first recipient would get it (nothing is saved or sent).

    Raises RecipientListError or ValidationError for a list that could not be sent.
    """
    card = data["cards"][0]
    job = BulkEmailJob(company=company, subject=data["subject"], message=data["message"])
    if data["recipients"] is None:
        email, name, typed_email = card.email, card.full_name, ""
    else:
        recipients, _duplicates = parse_recipients(data["recipients"])
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


@require_http_methods(["GET", "POST"])
@company_admin_required
def send(request):
    company = current_company(request)
    context = {"bad_lines": None, "preview": None}
    if request.method == "GET":
        form = SendForm(company=company)
    else:
        form = SendForm(request.POST, request.FILES, company=company)
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
                    )
                    messages.success(
                        request,
                        ngettext(
                            "Email job #%(job)s created with %(count)s recipient; "
                            "it starts on the next processor run.",
                            "Email job #%(job)s created with %(count)s recipients; "
                            "it starts on the next processor run.",
                            job.total_items,
                        )
                        % {"job": job.pk, "count": job.total_items},
                    )
                    return redirect(reverse("bulkjobs:job_detail", args=["email", job.pk]))
            except RecipientListError as exc:
                context["bad_lines"] = exc.bad_lines
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
