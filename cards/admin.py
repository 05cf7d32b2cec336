"""Django admin for companies, memberships and cards, and the admin site's titles.

The Django admin is the platform operators' tool: it shows every company's data. Company
admins never get staff status; they work in the app (/background-jobs/, the card list and
the send and sync pages), which is scoped to their company.
"""

from django.contrib import admin

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


@admin.register(BusinessCard)
class BusinessCardAdmin(admin.ModelAdmin):
    list_display = ["full_name", "job_title", "email", "company", "updated_at"]
    list_filter = ["company"]
    search_fields = ["full_name", "email", "job_title"]
    readonly_fields = ["public_id", "created_at", "updated_at"]
    list_select_related = ["company"]
