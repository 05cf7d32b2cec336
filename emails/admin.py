"""Django admin for the suppression list and the email jobs (on the engine's shared admin)."""

from django.contrib import admin

from bulkjobs.admin import BulkJobAdmin, BulkJobItemAdmin, make_item_inline

from .models import BulkEmailJob, BulkEmailJobItem, EmailSuppression


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(admin.ModelAdmin):
    list_display = ["email", "company", "reason", "platform_wide", "created_at"]
    list_filter = ["reason", "platform_wide", "company"]
    search_fields = ["email"]


@admin.register(BulkEmailJob)
class BulkEmailJobAdmin(BulkJobAdmin):
    list_display = [*BulkJobAdmin.list_display[:2], "subject", *BulkJobAdmin.list_display[2:]]
    search_fields = [*BulkJobAdmin.search_fields, "subject"]
    item_inline = make_item_inline(BulkEmailJobItem)


@admin.register(BulkEmailJobItem)
class BulkEmailJobItemAdmin(BulkJobItemAdmin):
    pass
