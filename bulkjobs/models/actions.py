"""Who did what to a job: the actions people and commands take (cancel, pause, resume,
retry, release a claim), one row each, shown on the job's page and in the admin.

Stored as data (the action, who, through what, when), not as words: the sentence ("Paused
by Anna Schmidt at 14:02 CET") is made when it is shown, in the reader's language and
time zone (describe()). A job kind has its own job table, so a row names its job by kind
and id rather than by a foreign key; retention deletes a job's rows with the job.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cards.locale import format_zoned


class JobActionQuerySet(models.QuerySet):
    def for_job(self, kind_name, job_pk):
        """The job's actions, newest first."""
        return self.filter(kind=kind_name, job_id=job_pk).order_by("-at", "-id")

    def latest_per_job(self, kind_name, job_pks, action):
        """{job id: its latest action `action`} for the given jobs (one query)."""
        latest = {}
        rows = self.filter(kind=kind_name, job_id__in=list(job_pks), action=action)
        for row in rows.order_by("job_id", "at", "id"):
            latest[row.job_id] = row
        return latest


class JobAction(models.Model):
    class Action(models.TextChoices):
        CANCEL = "cancel", _("Cancel")
        PAUSE = "pause", _("Pause")
        RESUME = "resume", _("Resume")
        RETRY = "retry", _("Retry")
        RELEASE = "release", _("Release claim")

    class Via(models.TextChoices):
        APP = "app", _("app")
        ADMIN = "admin", _("admin")
        COMMAND = "command", _("command")
        #: Code that names no person (a test, a script calling the services).
        OTHER = "other", _("other")

    #: The job's kind (bulkjobs.kinds: "email", "wallet") and id.
    kind = models.CharField(max_length=30)
    job_id = models.BigIntegerField()
    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=20, choices=Action.choices)
    via = models.CharField(max_length=10, choices=Via.choices)
    # The person; their name is saved too, so the history still names them once the
    # account is gone.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    #: The person's name when they acted, or the command's ("pause_job").
    name = models.CharField(max_length=150, blank=True)
    at = models.DateTimeField(default=timezone.now)
    #: Items the action changed (cancelled, queued again), where it counts them.
    items = models.PositiveIntegerField(null=True, blank=True)

    objects = JobActionQuerySet.as_manager()

    class Meta:
        db_table = "bulkjobs_job_action"
        indexes = [
            # Serves the job page's history and the rows' "Paused by":
            # WHERE kind = ? AND job_id IN (...) ORDER BY at.
            models.Index(fields=["kind", "job_id", "at"], name="job_action_job_idx"),
        ]

    def __str__(self):
        return f"{self.action} of {self.kind} job #{self.job_id} by {self.who()}"

    def who(self):
        """Who acted, for people: "Anna Schmidt", "command pause_job", or "" for code
        that named nobody."""
        if self.via == self.Via.COMMAND:
            return gettext("command %(name)s") % {"name": self.name}
        return self.name

    def describe(self, now=None):
        """ "Paused by Anna Schmidt at 14:02 CET" in the active language and time zone
        (the date too when it was not today)."""
        now = now or timezone.now()
        same_day = timezone.localtime(self.at).date() == timezone.localtime(now).date()
        when = format_zoned(self.at, "H:i" if same_day else "Y-m-d H:i")
        who = self.who()
        if who:
            sentences = {
                self.Action.CANCEL: gettext("Cancelled by %(who)s at %(time)s"),
                self.Action.PAUSE: gettext("Paused by %(who)s at %(time)s"),
                self.Action.RESUME: gettext("Resumed by %(who)s at %(time)s"),
                self.Action.RETRY: gettext("Retried by %(who)s at %(time)s"),
                self.Action.RELEASE: gettext("Claim released by %(who)s at %(time)s"),
            }
        else:
            sentences = {
                self.Action.CANCEL: gettext("Cancelled at %(time)s"),
                self.Action.PAUSE: gettext("Paused at %(time)s"),
                self.Action.RESUME: gettext("Resumed at %(time)s"),
                self.Action.RETRY: gettext("Retried at %(time)s"),
                self.Action.RELEASE: gettext("Claim released at %(time)s"),
            }
        return sentences[self.action] % {"who": who, "time": when}
