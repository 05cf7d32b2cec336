"""The "Send cards by email" page: choose cards, recipients, subject and message, preview, start.

Everything is validated in one pass before anything is created: the fields and every
bad line of the list (each with its line number and kind of mistake) come back at once,
under a summary at the top that links to each and takes the focus. A list above
settings.EMAIL_REVIEW_THRESHOLD recipients, or any send when "Review first" is ticked,
goes to its review (emails/review.py) before it is queued; Preview shows the email as
sent in a frame of its own (the same draft's URL).

A pasted list arrives like an uploaded file (emails/uploads.py), so a list of any size
up to the most a job takes never meets Django's 2.5 MB limit on form fields, and a
bigger one is refused on the form, which keeps everything else.
"""

from django import forms
from django.conf import settings
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

from cards.forms import CardSelectionForm
from cards.tenancy import company_admin_required, current_company

from . import review, uploads
from .recipients import (
    BadLine,
    RecipientListError,
    address_problem,
    decode_upload,
    more_bad_lines,
    parse_recipients,
)
from .services import SUBJECT_FORBIDDEN, SUBJECT_ON_ONE_LINE, create_email_job

#: An uploaded file's text is put back in the list field after an error up to this size;
#: a bigger one would make the page as big as the file (the file is chosen again).
KEEP_UPLOAD_CHARS = 100_000

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
    review_first = forms.BooleanField(
        label=gettext_lazy("Review first"),
        required=False,
        help_text=gettext_lazy(
            "A summary, the email as sent and a test to yourself before anything is queued "
            "(always for more than %(count)s recipients)."
        ),
    )

    #: the fields shown for a list only (hidden by the page's script for the holders)
    list_fields = ("recipients_text", "recipients_file")

    def __init__(self, *args, oversize=(), **kwargs):
        super().__init__(*args, **kwargs)
        #: the fields whose list was larger than uploads.max_list_bytes() (not received)
        self.oversize = set(oversize)
        self.fields["review_first"].help_text = self.fields["review_first"].help_text % {
            "count": number_format(settings.EMAIL_REVIEW_THRESHOLD, force_grouping=True)
        }
        #: after cleaning a list: (recipients, duplicates dropped); bad lines (the first
        #: ones), how many, and whether they are cards rather than lines of a list
        self.parsed = None
        self.uploaded_text = None
        self.bad_lines = []
        self.bad_line_count = 0
        self.bad_lines_in_cards = False

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
        # Kept aside: an error added to the field later takes it out of cleaned_data.
        self.uploaded_text = decode_upload(upload.read())
        return self.uploaded_text

    def clean_subject(self):
        subject = self.cleaned_data["subject"]
        if SUBJECT_FORBIDDEN.search(subject):
            raise ValidationError(SUBJECT_ON_ONE_LINE)
        return subject

    def clean(self):
        data = super().clean()
        if data.get("recipient_mode") == self.TO_LIST:
            from_file = bool(data.get("recipients_file"))
            text = data.get("recipients_file") or data.get("recipients_text") or ""
            data["recipients"] = text
            field = "recipients_file" if from_file else "recipients_text"
            if not text.strip():
                if not self.oversize:
                    self.add_error(
                        "recipients_text", _("Paste a list of addresses or upload a file.")
                    )
            else:
                self._parse(field, text)
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
            self._check_holders(data.get("cards") or [])
        return data

    def _parse(self, field, text):
        """Read the list now, whatever else is wrong, so that every error shows at once."""
        try:
            self.parsed = parse_recipients(text, max_recipients=settings.EMAIL_MAX_RECIPIENTS)
        except RecipientListError as exc:
            self.bad_lines, self.bad_line_count = exc.bad_lines, exc.count
            self.add_error(
                field,
                ngettext(
                    "%(count)s line of the list has a problem (listed below).",
                    "%(count)s lines of the list have problems (listed below).",
                    exc.count,
                )
                % {"count": number_format(exc.count, force_grouping=True)},
            )
            return
        except ValidationError as exc:
            self.add_error(field, exc)
            return
        if not self.parsed[0]:
            self.add_error(field, _("The recipient list is empty."))

    def _check_holders(self, cards):
        """Each chosen card must have an address to send it to."""
        for number, card in enumerate(cards, start=1):
            if address_problem(card.email or "")[1] is not None:
                self.bad_line_count += 1
                if len(self.bad_lines) < 100:
                    self.bad_lines.append(
                        BadLine(number, card.full_name, _("the card has no valid email address"))
                    )
        if self.bad_lines:
            self.bad_lines_in_cards = True
            self.add_error(
                "cards",
                ngettext(
                    "%(count)s chosen card has no valid email address (listed below).",
                    "%(count)s chosen cards have no valid email address (listed below).",
                    self.bad_line_count,
                )
                % {"count": number_format(self.bad_line_count, force_grouping=True)},
            )

    def recipient_count(self):
        if self.parsed is not None:
            return len(self.parsed[0])
        return len(self.cleaned_data["cards"])


def too_big(message):
    """`message` with the most a list may take, in MB (%(size)s) and recipients (%(count)s)."""
    size = uploads.max_list_bytes() / 10**6
    return message % {
        "size": number_format(size if size % 1 else int(size)),
        "count": number_format(settings.EMAIL_MAX_RECIPIENTS, force_grouping=True),
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


def _initial_from_draft(request):
    """The form as a draft left it ("Change" on the review page), or None."""
    draft_id = request.GET.get("draft")
    if not draft_id:
        return None
    try:
        draft = review.get_draft(request, draft_id)
    except (ValidationError, ValueError):
        return None
    initial = {
        "card_mode": SendForm.CARDS_SELECTED,
        "cards": draft.card_ids,
        "recipient_mode": SendForm.TO_LIST if draft.to_list else SendForm.TO_HOLDERS,
        "subject": draft.subject,
        "message": draft.message,
    }
    if draft.to_list:
        initial["recipients_text"] = "".join(
            f"{name} <{email}>\n" if name else f"{email}\n" for email, name in draft.recipients
        )
    return initial


@csrf_protect
def _send(request):
    company = current_company(request)
    context = {"preview_draft": None}
    if request.method == "GET":
        form = SendForm(initial=_initial_from_draft(request), company=company)
    else:
        data, files = _posted(request)
        form = SendForm(data, files, company=company, oversize=request.oversize_lists)
        valid = form.is_valid()
        uploaded_text = form.uploaded_text
        if uploaded_text:
            form.data = form.data.copy()
            if len(uploaded_text) <= KEEP_UPLOAD_CHARS:
                # An upload does not survive a re-render, so keep its text in the form
                # whatever else was wrong.
                form.data["recipients_text"] = uploaded_text
            else:
                context["upload_not_kept"] = True
        if valid:
            response = _valid_send(request, company, form, context)
            if response is not None:
                return response
    if form.bad_lines:
        context.update(
            bad_lines=form.bad_lines,
            bad_line_count=form.bad_line_count,
            bad_lines_in_cards=form.bad_lines_in_cards,
            more_bad_lines=(
                more_bad_lines(form.bad_line_count - len(form.bad_lines))
                if form.bad_line_count > len(form.bad_lines)
                else None
            ),
        )
    context.update(
        form=form,
        card_count=form.fields["cards"].queryset.count(),
        review_threshold=settings.EMAIL_REVIEW_THRESHOLD,
    )
    status = 200 if request.method == "GET" or not form.errors else 400
    return render(request, "emails/send.html", context, status=status)


def _valid_send(request, company, form, context):
    """Preview, review or start a send the form found valid; a response, or None to show
    the page again (with the preview, or with what the service refused)."""
    data = form.cleaned_data
    recipients, duplicates = form.parsed if form.parsed is not None else (None, 0)
    action = request.POST.get("action")
    try:
        if action == "preview":
            draft = review.save_draft(request, company, data, recipients, duplicates)
            card_email, message = review.first_message(draft, data["cards"])
            context["preview_draft"] = draft
            context["preview"] = {
                "card": data["cards"][0],
                "to": message.to[0],
                "subject": message.subject,
                "attachment": card_email.vcard_name,
                "text": message.body,
            }
            return None
        if data.get("review_first") or form.recipient_count() > settings.EMAIL_REVIEW_THRESHOLD:
            draft = review.save_draft(request, company, data, recipients, duplicates)
            return redirect(reverse("emails:review", args=[draft.pk]))
        job = create_email_job(
            company=company,
            cards=data["cards"],
            subject=data["subject"],
            message=data["message"],
            recipients=None if recipients is None else [(r.email, r.name) for r in recipients],
            created_by=request.user,
            # The form asks a list's sender to confirm the recipients' consent.
            consent_confirmed_by=request.user if recipients is not None else None,
        )
    except ValidationError as exc:
        for text in exc.messages:
            form.add_error(None, text)
        return None
    return review.job_created(request, job)
