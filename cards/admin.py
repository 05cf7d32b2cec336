"""Django admin for companies, memberships and cards, and the admin site's titles.

The Django admin is the platform operators' tool: it shows every company's data. Company
admins never get staff status; they work in the app (/background-jobs/, the card list and
the send and sync pages), which is scoped to their company.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from . import phones
from .models import BusinessCard, Company, Membership

# Said on every admin page, so that nobody takes it for a company's own back office.
admin.site.site_header = "Business cards: platform operators' admin"
admin.site.site_title = "Platform operators' admin"
admin.site.index_title = "All companies (company admins use the app at /background-jobs/)"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "language", "time_zone", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "company", "role"]
    list_filter = ["role", "company"]
    search_fields = ["user__username", "user__email", "company__name"]
    autocomplete_fields = ["user", "company"]


class BusinessCardForm(forms.ModelForm):
    """The card form: a phone number that cannot be dialled is refused when it is typed.

    A validation error rather than a warning: such a number is nearly always a typo, and
    the form is the one moment someone who knows the right number is there; saved, it
    would reach every pass, vCard and email unlinked. A number stored earlier (an import,
    before numbers were checked) that is left unchanged does not block other edits; the
    admin warns about it instead (BusinessCardAdmin.save_model).
    """

    class Meta:
        model = BusinessCard
        fields = [
            "company",
            "full_name",
            "job_title",
            "email",
            "phone",
            "mobile",
            "website",
            "address",
            "photo",
        ]

    def clean(self):
        data = super().clean()
        company = data.get("company") or getattr(self.instance, "company", None)
        if company is None:
            return data
        region = phones.region_of(company)
        for field in ("phone", "mobile"):
            typed = data.get(field)
            if field in self.changed_data and typed and not phones.parse(typed, region).dialable:
                self.add_error(
                    field,
                    ValidationError(
                        _(
                            "%(number)s is not a phone number that can be dialled in "
                            "%(country)s or abroad. Check it, or type it with its country "
                            "code (+49 711 1234567)."
                        ),
                        params={"number": typed, "country": region},
                        code="invalid_phone",
                    ),
                )
        return data


@admin.register(BusinessCard)
class BusinessCardAdmin(admin.ModelAdmin):
    form = BusinessCardForm
    list_display = ["full_name", "job_title", "email", "company", "updated_at"]
    list_filter = ["company"]
    search_fields = ["full_name", "email", "job_title"]
    readonly_fields = ["public_id", "created_at", "updated_at"]
    list_select_related = ["company"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        for field, number in (("phone", obj.phone_number), ("mobile", obj.mobile_number)):
            if number and not number.dialable:
                self.message_user(
                    request,
                    _(
                        "The %(field)s number %(number)s cannot be dialled; it is shown as "
                        "typed, without a link. Please correct it."
                    )
                    % {"field": BusinessCard._meta.get_field(field).verbose_name, "number": number},
                    messages.WARNING,
                )
