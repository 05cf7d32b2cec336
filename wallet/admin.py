"""Django admin for wallet jobs (on the engine's shared admin), card wallet state and
Apple device registrations. Pass bytes and authentication tokens are never shown."""

from django.contrib import admin
from django.db.models import Count

from bulkjobs.admin import BulkJobAdmin, BulkJobItemAdmin, make_item_inline

from .models import AppleDeviceRegistration, BulkWalletApiJob, BulkWalletApiJobItem, CardWalletState


@admin.register(BulkWalletApiJob)
class BulkWalletApiJobAdmin(BulkJobAdmin):
    item_inline = make_item_inline(BulkWalletApiJobItem)

    def get_list_filter(self, request):
        return [*super().get_list_filter(request), "automatic"]


@admin.register(BulkWalletApiJobItem)
class BulkWalletApiJobItemAdmin(BulkJobItemAdmin):
    list_filter = ["status", "apple_result", "google_result"]


class RegistrationInline(admin.TabularInline):
    model = AppleDeviceRegistration
    fields = ["device_library_id", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(CardWalletState)
class CardWalletStateAdmin(admin.ModelAdmin):
    list_display = ["__str__", "apple_serial_number", "apple_updated_at", "devices",
                    "google_object_id", "voided_at"]  # fmt: skip
    search_fields = ["=apple_serial_number", "card__full_name", "google_object_id"]
    list_select_related = ["card"]
    fields = ["card", "apple_serial_number", "apple_update_tag", "apple_updated_at",
              "apple_pass_hash", "apple_content_hash", "voided_at", "google_object_id",
              "google_content_hash"]  # fmt: skip
    readonly_fields = fields
    inlines = [RegistrationInline]

    def get_queryset(self, request):
        # The stored pass can be tens of kilobytes per card: never load it for a list.
        return (
            super()
            .get_queryset(request)
            .defer("apple_pass_data")
            .annotate(device_count=Count("registrations"))
        )

    @admin.display(description="devices", ordering="device_count")
    def devices(self, state):
        return state.device_count

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AppleDeviceRegistration)
class AppleDeviceRegistrationAdmin(admin.ModelAdmin):
    list_display = ["device_library_id", "state", "created_at"]
    search_fields = ["=device_library_id", "=state__apple_serial_number"]
    raw_id_fields = ["state"]
    readonly_fields = ["device_library_id", "push_token", "state", "created_at"]

    def has_add_permission(self, request):
        return False
