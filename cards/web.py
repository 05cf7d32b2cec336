"""The signed-in card list at /cards/: the company's cards, searchable by name or email."""

from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .models import BusinessCard
from .tenancy import company_member_required, current_membership

CARDS_PER_PAGE = 50


@require_GET
@company_member_required
def card_list(request):
    membership = current_membership(request)
    cards = BusinessCard.objects.filter(company=membership.company).order_by("full_name", "id")
    query = request.GET.get("q", "").strip()
    if query:
        cards = cards.filter(Q(full_name__icontains=query) | Q(email__icontains=query))
    page = Paginator(cards, CARDS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "cards/card_list.html",
        {"page": page, "query": query, "membership": membership},
    )
