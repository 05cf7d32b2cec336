"""The "Sync cards to wallets" page: choose cards, see which platforms are configured, start.

wallet.services is imported when the page is used, not at import time, so the rest of
the web app works (and this page explains itself) while the wallet kind is missing or
being installed.
"""

import importlib

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from bulkjobs.tenancy import company_admin_required, current_company
from cards.forms import CardSelectionForm


class SyncForm(CardSelectionForm):
    default_card_mode = CardSelectionForm.CARDS_ALL


def wallet_services():
    """The wallet services module, or None while the wallet kind is not installed."""
    try:
        module = importlib.import_module("wallet.services")
    except ImportError:
        return None
    return module if hasattr(module, "create_wallet_job") else None


def platforms(services):
    """(name, configured, detail) rows from wallet.services.platform_status().

    platform_status() answers {"apple": {"label", "configured", "missing"}, ...}; plain
    booleans or objects with a `configured` attribute are accepted too, so the page
    keeps working if the wallet side changes the shape slightly.
    """
    status_of = getattr(services, "platform_status", None)
    if status_of is None:
        return []
    status = status_of()
    rows = status.items() if hasattr(status, "items") else enumerate(status)
    result = []
    for name, value in rows:
        if isinstance(value, dict):
            configured = bool(value.get("configured"))
            missing = value.get("missing") or []
            detail = value.get("detail") or (
                f"needs {', '.join(missing)}" if missing and not configured else ""
            )
            name = value.get("label", name)
        elif isinstance(value, bool):
            configured, detail = value, ""
        elif isinstance(value, str):
            configured, detail = False, value
        else:
            configured = bool(getattr(value, "configured", value))
            detail = getattr(value, "detail", "") or getattr(value, "reason", "")
            name = getattr(value, "name", name)
        result.append((str(name), configured, str(detail)))
    return result


@require_http_methods(["GET", "POST"])
@company_admin_required
def sync(request):
    company = current_company(request)
    services = wallet_services()
    if services is None:
        return render(request, "wallet/sync.html", {"unavailable": True}, status=503)
    form = SyncForm(request.POST or None, company=company)
    if request.method == "POST" and form.is_valid():
        cards = None
        if form.cleaned_data["card_mode"] == SyncForm.CARDS_SELECTED:
            cards = list(form.cleaned_data["cards"])
        try:
            job = services.create_wallet_job(company, cards=cards, created_by=request.user)
        except ValidationError as exc:
            for text in exc.messages:
                form.add_error(None, text)
        else:
            messages.success(
                request,
                f"Wallet sync job #{job.pk} created with {job.total_items} item(s); "
                "it starts on the next processor run.",
            )
            return redirect(reverse("bulkjobs:job_detail", args=["wallet", job.pk]))
    return render(
        request,
        "wallet/sync.html",
        {
            "form": form,
            "platforms": platforms(services),
            "card_count": form.fields["cards"].queryset.count(),
        },
        status=400 if form.errors else 200,
    )
