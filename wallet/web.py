"""The "Sync cards to wallets" page: choose cards, see which platforms are configured, start."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods

from bulkjobs.kinds import get_kind
from bulkjobs.web import queue
from cards.forms import CardSelectionForm
from cards.tenancy import company_admin_required, current_company

from .services import create_wallet_job, platform_status


class SyncForm(CardSelectionForm):
    default_card_mode = CardSelectionForm.CARDS_ALL


#: What a company user reads when no wallet platform is set up: setting names and
#: certificates are the platform operators' business, not theirs.
NOT_SET_UP = gettext_lazy(
    "Wallet sync is not set up on this site yet: the platform operators have to connect "
    "Apple Wallet or Google Wallet first."
)


def platform_rows():
    """(label, configured, what is missing) for each platform; the missing settings are
    shown to platform operators (staff) only."""
    return [
        (
            entry["label"],
            entry["configured"],
            ""
            if entry["configured"]
            else _("needs %(settings)s") % {"settings": ", ".join(entry["missing"])},
        )
        for entry in platform_status().values()
    ]


@require_http_methods(["GET", "POST"])
@company_admin_required
def sync(request):
    company = current_company(request)
    form = SyncForm(request.POST or None, company=company)
    if request.method == "POST" and form.is_valid():
        cards = None
        if form.cleaned_data["card_mode"] == SyncForm.CARDS_SELECTED:
            cards = form.cleaned_data["cards"]
        try:
            job = create_wallet_job(company, cards=cards, created_by=request.user)
        except ValidationError as exc:
            configured = any(entry["configured"] for entry in platform_status().values())
            if configured or request.user.is_staff:
                for text in exc.messages:
                    form.add_error(None, text)
            else:
                form.add_error(None, NOT_SET_UP)
        else:
            created = ngettext(
                "Wallet sync job #%(job)s created with %(count)s card.",
                "Wallet sync job #%(job)s created with %(count)s cards.",
                job.total_items,
            ) % {"job": job.pk, "count": job.total_items}
            # Where it stands in the company's queue, as its page says.
            waits = queue.wait_of_new_job(get_kind("wallet"), job)
            messages.success(request, f"{created} {waits}")
            return redirect(reverse("bulkjobs:job_detail", args=["wallet", job.pk]))
    return render(
        request,
        "wallet/sync.html",
        {
            "form": form,
            "platforms": platform_rows(),
            "card_count": form.fields["cards"].queryset.count(),
        },
        status=400 if form.errors else 200,
    )
