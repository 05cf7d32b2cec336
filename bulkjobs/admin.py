"""Shared Django admin for job kinds: job and item admins, a bounded item inline, actions.

A kind's app registers its models with these bases (see emails/admin.py); any job or
item model left unregistered when the apps are ready gets the generic admin
(register_missing, called from BulkJobsConfig.ready()), so a new kind shows up in the
admin without code here.

Nothing here can put a job into an impossible state: status, counters, times and the
claim are read-only, items are read-only, and every state change goes through
bulkjobs.ops.services (cancel, pause, resume, retry failed items, retry those whose
delivery is unknown, release stuck claim). Each action first shows a confirmation page
(as Django's delete action does), records the operator as who did it (JobAction, shown
on the job's page and here) and writes the admin's own history entry (LogEntry).

The admin is the platform operators' tool and sees every company. Each action changes a
job, so it needs the job model's "change" permission: a staff user who may only view
jobs is neither offered the actions nor able to run them with a forged POST (Django
leaves an action whose `permissions` the user lacks out of the list and out of the
choices a POST may name).
"""

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from . import reasons
from .kinds import kind_for_job
from .models import BulkJob, BulkJobItem, JobAction, Status
from .ops.services import (
    ONLY_UNKNOWN,
    RETRYABLE_JOB_STATUSES,
    Actor,
    cancel_job,
    pause_job,
    release_stuck_claim,
    resume_job,
    retry_failed_items,
)
from .web.rows import last_action, with_last_action

#: Items shown inline on a job's admin page; the rest are one click away in the
#: item changelist filtered to the job, so jobs with 100,000 items stay fast.
INLINE_ITEMS = 20

JOB_STATE_FIELDS = [
    "status",
    "reason_words",
    "reason",
    "reason_code",
    "reason_params",
    "provider_reply",
    "total_items",
    "succeeded_items",
    "failed_items",
    "cancelled_items",
    "created_at",
    "started_at",
    "finished_at",
    "last_processed_at",
    "activity_at",
    "claim_token",
    "claimed_at",
    "heartbeat_at",
]


def _fk_names(model):
    return [f.name for f in model._meta.concrete_fields if f.is_relation and f.many_to_one]


class FirstItemsFormSet(BaseInlineFormSet):
    """Inline formset over the first INLINE_ITEMS items only (never loads them all)."""

    def get_queryset(self):
        if not hasattr(self, "_first_items"):
            self._first_items = super().get_queryset()[:INLINE_ITEMS]
        return self._first_items


class BulkJobItemInline(admin.TabularInline):
    """Read-only list of a job's first items, with their related rows joined in."""

    formset = FirstItemsFormSet
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = f"items (first {INLINE_ITEMS}; see all through the link above)"

    def get_fields(self, request, obj=None):
        return [
            f.name
            for f in self.model._meta.concrete_fields
            if f.name not in ("id", "job", "next_attempt_at")
        ]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def get_queryset(self, request):
        # Related objects are shown by their __str__; join them instead of one query per row.
        related = [name for name in _fk_names(self.model) if name != "job"]
        return super().get_queryset(request).select_related(*related).order_by("id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _operator(request):
    return Actor.person(request.user, via=JobAction.Via.ADMIN)


def _confirmation(
    modeladmin, request, queryset, action, *, question, explanation, button, eligible, ineligible
):
    """The page an action shows before it acts (unless its POST says post=yes, as the
    page's form does): what it will do, to which of the selected jobs, and which of them
    it leaves alone. None once confirmed."""
    if request.POST.get("post") == "yes":
        return None
    jobs = list(queryset)
    return TemplateResponse(
        request,
        "admin/bulkjobs/action_confirmation.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": question,
            "opts": modeladmin.model._meta,
            "queryset": queryset,
            "action": action,
            "explanation": explanation,
            "button": button,
            "eligible": [job for job in jobs if eligible(job)],
            "ineligible": [job for job in jobs if not eligible(job)],
            "ineligible_note": ineligible,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        },
    )


@admin.action(
    description="Cancel selected jobs (unfinished items are cancelled; asks first)",
    permissions=["change"],
)
def cancel_jobs(modeladmin, request, queryset):
    page = _confirmation(
        modeladmin,
        request,
        queryset,
        "cancel_jobs",
        question="Cancel these jobs?",
        explanation=(
            "Their items not yet done are marked cancelled and will not be processed; items "
            "already done stay done. A batch in flight stops before its next item. This "
            "cannot be undone."
        ),
        button="Yes, cancel",
        eligible=lambda job: job.is_open,
        ineligible="already finished; left as they are",
    )
    if page is not None:
        return page
    cancelled = skipped = 0
    for job in queryset:
        count = cancel_job(job, by=_operator(request), reason="Cancelled by admin")
        if count is None:
            skipped += 1
            continue
        cancelled += 1
        modeladmin.log_change(request, job, f"Cancelled: {count} item(s) cancelled.")
    modeladmin.message_user(request, f"{cancelled} job(s) cancelled; {skipped} were not active.")


@admin.action(description="Pause selected jobs until resumed (asks first)", permissions=["change"])
def pause_jobs(modeladmin, request, queryset):
    page = _confirmation(
        modeladmin,
        request,
        queryset,
        "pause_jobs",
        question="Pause these jobs?",
        explanation=(
            "Nothing more of them is processed until someone resumes them; their companies' "
            "next jobs go ahead meanwhile. A batch in flight stops before its next item."
        ),
        button="Yes, pause",
        eligible=lambda job: job.is_active,
        ineligible="not pending or processing; left as they are",
    )
    if page is not None:
        return page
    paused = 0
    for job in queryset:
        if pause_job(job, by=_operator(request)):
            paused += 1
            modeladmin.log_change(request, job, "Paused.")
    modeladmin.message_user(
        request, f"{paused} job(s) paused; {queryset.count() - paused} were not active."
    )


@admin.action(description="Resume selected paused jobs (asks first)", permissions=["change"])
def resume_jobs(modeladmin, request, queryset):
    page = _confirmation(
        modeladmin,
        request,
        queryset,
        "resume_jobs",
        question="Resume these jobs?",
        explanation="The next processor run goes on with their items not yet done.",
        button="Yes, resume",
        eligible=lambda job: job.status == Status.PAUSED,
        ineligible="not paused; left as they are",
    )
    if page is not None:
        return page
    resumed = 0
    for job in queryset:
        if resume_job(job, by=_operator(request)):
            resumed += 1
            modeladmin.log_change(request, job, "Resumed.")
    modeladmin.message_user(
        request, f"{resumed} job(s) resumed; {queryset.count() - resumed} were not paused."
    )


@admin.action(
    description="Retry failed items of selected jobs (asks first)", permissions=["change"]
)
def retry_jobs(modeladmin, request, queryset):
    page = _confirmation(
        modeladmin,
        request,
        queryset,
        "retry_jobs",
        question="Retry the failed items of these jobs?",
        explanation=(
            "Their failed items go back to pending with a fresh round of attempts. Items "
            "whose delivery is unknown and suppressed addresses stay failed."
        ),
        button="Yes, retry",
        eligible=lambda job: job.status in RETRYABLE_JOB_STATUSES and job.failed_items > 0,
        ineligible="still running, cancelled, or without failed items; left as they are",
    )
    if page is not None:
        return page
    queued = jobs = skipped = unknown = 0
    refused = []
    for job in queryset:
        try:
            result = retry_failed_items(job, by=_operator(request))
        except ValueError:
            refused.append(str(job.pk))
            continue
        skipped += result.skipped_total
        unknown += result.unknown_left
        if result.queued:
            jobs += 1
            queued += result.queued
            modeladmin.log_change(
                request, job, f"Retried: {result.queued} failed item(s) queued again."
            )
    text = f"{queued} failed item(s) of {jobs} job(s) queued again."
    if skipped:
        text += f" {skipped} left failed (suppressed addresses)."
    if unknown:
        text += (
            f" {unknown} item(s) whose delivery is unknown were not retried (the recipients "
            "may already have them; 'Retry items whose delivery is unknown' asks first)."
        )
    modeladmin.message_user(request, text)
    if refused:
        modeladmin.message_user(
            request,
            f"Not retried (still running or cancelled): job(s) {', '.join(refused)}.",
            level=messages.WARNING,
        )


def _unknown_counts(queryset):
    """[(job, number of its failed items whose delivery is unknown)] of the finished jobs
    among `queryset` (one job model, so one kind) that have any; one query."""
    kind = kind_for_job(queryset.model())
    is_unknown = kind.unknown_outcome()
    if is_unknown is None:
        return []
    jobs = {job.pk: job for job in queryset.filter(status__in=RETRYABLE_JOB_STATUSES)}
    counts = (
        kind.item_model.objects.filter(is_unknown, job_id__in=list(jobs), status=Status.FAILED)
        .order_by("job_id")
        .values_list("job_id")
        .annotate(n=Count("id"))
    )
    return [(jobs[job_id], n) for job_id, n in counts]


@admin.action(
    description="Retry items whose delivery is unknown of selected jobs (asks first)",
    permissions=["change"],
)
def retry_unknown_jobs(modeladmin, request, queryset):
    """Queue again only the failed items whose delivery is unknown (an email the mail
    server may have delivered), after a confirmation page that says they may be sent
    twice; the other failed items are left to "Retry failed items"."""
    if request.POST.get("post") != "yes":
        found = _unknown_counts(queryset)
        return TemplateResponse(
            request,
            "admin/bulkjobs/retry_unknown_confirmation.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": "Retry items whose delivery is unknown?",
                "opts": modeladmin.model._meta,
                "queryset": queryset,
                "found": found,
                "total": sum(count for _job, count in found),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )
    queued = jobs = 0
    refused = []
    for job in queryset:
        try:
            result = retry_failed_items(job, by=_operator(request), unknown=ONLY_UNKNOWN)
        except ValueError:
            refused.append(str(job.pk))
            continue
        if result.queued:
            jobs += 1
            queued += result.queued
            modeladmin.log_change(
                request,
                job,
                f"Retried: {result.queued} item(s) whose delivery is unknown queued again.",
            )
    modeladmin.message_user(
        request, f"{queued} item(s) whose delivery is unknown of {jobs} job(s) queued again."
    )
    if refused:
        modeladmin.message_user(
            request,
            f"Not retried (still running or cancelled): job(s) {', '.join(refused)}.",
            level=messages.WARNING,
        )


@admin.action(
    description="Release stuck claim (let the next run take the job; asks first)",
    permissions=["change"],
)
def release_claims(modeladmin, request, queryset):
    page = _confirmation(
        modeladmin,
        request,
        queryset,
        "release_claims",
        question="Release the claims of these jobs?",
        explanation=(
            "Only for a run that hangs: the next run takes the job over, and a run still "
            "holding it stops at its next write. An email whose sending was under way is "
            "then failed as 'delivery unknown', not sent again."
        ),
        button="Yes, release",
        eligible=lambda job: job.claim_token is not None,
        ineligible="not claimed; left as they are",
    )
    if page is not None:
        return page
    released = 0
    for job in queryset:
        if release_stuck_claim(job, by=_operator(request)):
            released += 1
            modeladmin.log_change(request, job, "Claim released.")
    modeladmin.message_user(request, f"{released} claim(s) released.")


class BulkJobAdmin(admin.ModelAdmin):
    """Base admin of a job model; subclasses add kind fields to list_display/search."""

    list_display = [
        "id",
        "status",
        "progress",
        "last_action",
        "company",
        "created_by",
        "created_at",
        "started_at",
        "last_processed_at",
        "finished_at",
    ]
    list_filter = ["status", "company", "created_at"]
    list_select_related = ["company", "created_by"]
    search_fields = ["=id", "company__name", "created_by__username", "reason"]
    raw_id_fields = ["company", "created_by"]
    actions = [
        cancel_jobs,
        pause_jobs,
        resume_jobs,
        retry_jobs,
        retry_unknown_jobs,
        release_claims,
    ]
    inlines = []
    #: An inline class for the item model; set by make_job_admin/subclasses.
    item_inline = None
    show_full_result_count = False
    # Newest first by primary key: the model's created_at ordering has no index of its
    # own across companies, and sorting 100,000 rows for every changelist page shows.
    ordering = ["-id"]
    list_per_page = 50

    def get_queryset(self, request):
        # Who last cancelled, paused, resumed or retried each job, in the same query.
        return with_last_action(kind_for_job(self.model()), super().get_queryset(request))

    def get_inlines(self, request, obj):
        return [self.item_inline] if (obj is not None and self.item_inline) else []

    def get_readonly_fields(self, request, obj=None):
        # Every field is read-only once the job exists: kinds' payload (subject,
        # message) included, because items may already have been sent with it.
        names = [f.name for f in self.model._meta.concrete_fields if f.name != "id"]
        return [*names, "progress", "items_link", "reason_words", "history"]

    def get_fields(self, request, obj=None):
        own = [
            f.name
            for f in self.model._meta.concrete_fields
            if f.name not in JOB_STATE_FIELDS and f.name not in ("id", "claimed_company")
        ]
        return [*own, "progress", "items_link", *JOB_STATE_FIELDS, "history"]

    @admin.display(description="reason")
    def reason_words(self, obj):
        """The reason as operators read it: their words, setting names included."""
        return reasons.describe(obj, for_staff=True)

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Bulk delete would remove jobs a run may hold; delete finished jobs one by one.
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # The model's delete permission, and never a job a run may hold.
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or not obj.is_active)

    def get_deleted_objects(self, objs, request):
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        # A job's items go with it, so the job's delete permission covers them; the item
        # admin refuses deleting an item on its own, which would leave the counters wrong.
        item_model = self.item_model()
        if item_model is not None:
            perms_needed.discard(item_model._meta.verbose_name)
        return deleted, model_count, perms_needed, protected

    @admin.display(description="progress")
    def progress(self, job):
        return format_html(
            '<progress max="100" value="{}" title="{}%"></progress> {} / {}',
            job.percent_done,
            job.percent_done,
            job.processed_items,
            job.total_items,
        )

    @admin.display(description="last action")
    def last_action(self, job):
        """ "Paused by Anna Schmidt at 14:02 CET" (with_last_action)."""
        action = last_action(job)
        return action.describe() if action is not None else "—"

    @admin.display(description="history")
    def history(self, job):
        """Who cancelled, paused, resumed, retried the job or released its claim, newest first."""
        if job.pk is None:
            return "—"
        actions = JobAction.objects.for_job(kind_for_job(job).name, job.pk)[:50]
        if not actions:
            return "—"
        return format_html_join(
            "", "<div>{} ({})</div>", ((a.describe(), a.get_via_display()) for a in actions)
        )

    @admin.display(description="all items")
    def items_link(self, job):
        item_model = self.item_model()
        if job.pk is None or item_model is None:
            return "—"
        try:
            url = reverse(
                f"admin:{item_model._meta.app_label}_{item_model._meta.model_name}_changelist"
            )
        except NoReverseMatch:
            return "—"
        return format_html(
            '<a href="{}?job__id__exact={}">All {} item(s) of this job</a>',
            url,
            job.pk,
            job.total_items,
        )

    def item_model(self):
        return self.item_inline.model if self.item_inline else None


class BulkJobItemAdmin(admin.ModelAdmin):
    """Base admin of an item model: read-only, filterable by job and status."""

    list_filter = ["status"]
    raw_id_fields = ["job"]
    show_full_result_count = False
    list_per_page = 100

    def get_list_display(self, request):
        own = [
            f.name
            for f in self.model._meta.concrete_fields
            if f.name not in {f.name for f in BulkJobItem._meta.concrete_fields}
            and f.name not in ("id", "job")
        ]
        return ["id", "job_id", "status", *own, "attempts", "processed_at", "reason_words"]

    @admin.display(description="reason")
    def reason_words(self, obj):
        """The reason as operators read it: their words, setting names included."""
        return reasons.describe(obj, for_staff=True)

    def get_search_fields(self, request):
        texts = [
            f.name
            for f in self.model._meta.concrete_fields
            if f.get_internal_type() in ("CharField", "EmailField") and f.name not in ("status",)
        ]
        return ["=id", "=job__id", *texts]

    def get_list_select_related(self, request):
        return [name for name in _fk_names(self.model) if name != "job"]

    def get_readonly_fields(self, request, obj=None):
        names = [f.name for f in self.model._meta.concrete_fields if f.name != "id"]
        return [*names, "reason_words"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def make_item_inline(item_model):
    return type(f"{item_model.__name__}Inline", (BulkJobItemInline,), {"model": item_model})


def item_model_for(job_model):
    """The concrete item model whose `job` foreign key points at job_model."""
    for model in apps.get_models():
        if issubclass(model, BulkJobItem):
            job_field = model._meta.get_field("job")
            if job_field.related_model is job_model:
                return model
    return None


def register_missing(site=admin.site):
    """Register the generic admin for every job and item model nobody registered."""
    for model in apps.get_models():
        if site.is_registered(model):
            continue
        if issubclass(model, BulkJob):
            item_model = item_model_for(model)
            attrs = {"item_inline": make_item_inline(item_model) if item_model else None}
            site.register(model, type(f"{model.__name__}Admin", (BulkJobAdmin,), attrs))
        elif issubclass(model, BulkJobItem):
            site.register(model, BulkJobItemAdmin)
