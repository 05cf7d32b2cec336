"""Django admin for the suppression list (job admin lives with the engine's shared admin)."""

from django.contrib import admin

from .models import EmailSuppression


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(admin.ModelAdmin):
    list_display = ["email", "company", "reason", "created_at"]
    list_filter = ["reason", "company"]
    search_fields = ["email"]
