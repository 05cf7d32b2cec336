"""The activity page's charts and the summary numbers: items processed and failed per
hour and per day, for each job kind.

The engine adds each batch's outcomes to the company's ActivityHour row
(bulkjobs.engine.activity); the pages read at most a month of those rows (read_activity),
so their cost does not grow with the number of jobs or items. Charts are drawn on the
server as SVG geometry (bars), each with a table that says the same in numbers.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from cards.locale import company_time_zone

from ..engine.activity import hour_start
from ..models import ActivityHour

#: The charts: hours of the hourly chart, days of the daily one.
HOURS = 24
DAYS = 30


@dataclass
class Bar:
    """One period of a chart: its label, counts, and the bars' geometry in SVG units."""

    label: str
    title: str
    processed: int
    failed: int
    x: float = 0.0
    width: float = 0.0
    ok_y: float = 0.0
    ok_height: float = 0.0
    failed_y: float = 0.0
    failed_height: float = 0.0

    @property
    def succeeded(self):
        return self.processed - self.failed


@dataclass
class Chart:
    """A bar chart of processed items per period, the failed part stacked on top."""

    id: str
    title: str
    bars: list
    #: SVG drawing area (viewBox) and the plot's frame inside it
    width: int = 720
    height: int = 200
    left: int = 44
    bottom: int = 24
    top: int = 10
    maximum: int = 0
    ticks: list = field(default_factory=list)
    labels: list = field(default_factory=list)

    @property
    def total_processed(self):
        return sum(bar.processed for bar in self.bars)

    @property
    def total_failed(self):
        return sum(bar.failed for bar in self.bars)

    @property
    def baseline(self):
        return self.height - self.bottom

    @property
    def description(self):
        """The chart in one sentence, for screen readers (the table has the details), in
        the language active when the page is rendered."""
        busiest = max(self.bars, key=lambda bar: bar.processed, default=None)
        counts = {
            "processed": self.total_processed,
            "failed": self.total_failed,
            "periods": len(self.bars),
        }
        text = (
            ngettext(
                "%(processed)s item processed, %(failed)s failed, over %(periods)s periods",
                "%(processed)s items processed, %(failed)s failed, over %(periods)s periods",
                self.total_processed,
            )
            % counts
        )
        if busiest and busiest.processed:
            text += _("; busiest: %(period)s with %(processed)s") % {
                "period": busiest.title,
                "processed": busiest.processed,
            }
        return text + "."


def nice_maximum(value):
    """The axis' top: 1, 2 or 5 times a power of ten, at least `value` and at least 10
    (so the middle tick is a whole number too)."""
    value = max(10, value)
    power = 1
    while True:
        for step in (1, 2, 5):
            if step * power >= value:
                return step * power
        power *= 10


def lay_out(chart, label_every):
    """Fill in the bars' geometry and the axis ticks (pure arithmetic on the counts)."""
    plot_width = chart.width - chart.left - 8
    plot_height = chart.baseline - chart.top
    chart.maximum = nice_maximum(max((bar.processed for bar in chart.bars), default=0))
    slot = plot_width / max(1, len(chart.bars))
    for n, bar in enumerate(chart.bars):
        bar.width = round(slot * 0.8, 2)
        bar.x = round(chart.left + n * slot + slot * 0.1, 2)
        ok = plot_height * bar.succeeded / chart.maximum
        bad = plot_height * bar.failed / chart.maximum
        bar.ok_height = round(ok, 2)
        bar.ok_y = round(chart.baseline - ok, 2)
        bar.failed_height = round(bad, 2)
        bar.failed_y = round(chart.baseline - ok - bad, 2)
        if n % label_every == 0:
            chart.labels.append({"x": round(bar.x + bar.width / 2, 2), "text": bar.label})
    chart.ticks = [
        {"y": round(chart.baseline - plot_height * f, 2), "value": round(chart.maximum * f)}
        for f in (0, 0.5, 1)
    ]
    return chart


def read_activity(company, now, days=DAYS):
    """The company's hourly rows of the last `days` days (plus today), one query: the
    charts read a month, the time per item behind time left a day (bulkjobs.web.eta)."""
    since = hour_start(now) - timedelta(days=days + 1)
    return list(
        ActivityHour.objects.filter(company=company, hour__gte=since)
        .order_by()
        .values_list("kind", "hour", "processed", "failed", "attempts", "busy_seconds")
    )


@dataclass
class KindActivity:
    """One kind's activity: summary numbers and its two charts."""

    kind: object
    sent_today: int
    failed_today: int
    queued: int
    hourly: Chart
    daily: Chart


def kind_activity(kind, rows, now, zone, queued):
    """Summary numbers and charts of one kind from read_activity()'s rows."""
    by_hour = {}
    for name, hour, processed, failed, _attempts, _busy in rows:
        if name == kind.name:
            counts = by_hour.setdefault(hour, [0, 0])
            counts[0] += processed
            counts[1] += failed
    this_hour = hour_start(now)
    hours = []
    for back in range(HOURS - 1, -1, -1):
        hour = this_hour - timedelta(hours=back)
        processed, failed = by_hour.get(hour, (0, 0))
        local = hour.astimezone(zone)
        hours.append(Bar(f"{local:%H}", f"{local:%Y-%m-%d %H}:00", processed, failed))
    today = now.astimezone(zone).date()
    by_day = {}
    for hour, (processed, failed) in by_hour.items():
        counts = by_day.setdefault(hour.astimezone(zone).date(), [0, 0])
        counts[0] += processed
        counts[1] += failed
    days = []
    for back in range(DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        processed, failed = by_day.get(day, (0, 0))
        days.append(Bar(f"{day:%d}", f"{day:%Y-%m-%d}", processed, failed))
    sent_today, failed_today = by_day.get(today, (0, 0))
    # str(): the kind's label is lazy; the titles are built in the request's language.
    label = str(kind.label)
    return KindActivity(
        kind=kind,
        sent_today=sent_today - failed_today,
        failed_today=failed_today,
        queued=queued,
        hourly=lay_out(
            Chart(
                f"{kind.name}-hourly",
                _("%(kind)s: items per hour, last %(hours)s hours")
                % {"kind": label, "hours": HOURS},
                hours,
            ),
            label_every=3,
        ),
        daily=lay_out(
            Chart(
                f"{kind.name}-daily",
                _("%(kind)s: items per day, last %(days)s days") % {"kind": label, "days": DAYS},
                days,
            ),
            label_every=5,
        ),
    )


def activity(company, kinds, queued, now=None):
    """Every kind's KindActivity for the company (one query). `queued` maps a kind's name
    to its items waiting now (from the dashboard's fingerprint)."""
    now = now or timezone.now()
    rows = read_activity(company, now)
    zone = company_time_zone(company)
    return [kind_activity(kind, rows, now, zone, queued.get(kind.name, 0)) for kind in kinds]
