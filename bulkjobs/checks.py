"""System checks for the engine's settings (`manage.py check`, `check --deploy`).

The processing commands skip the system checks (an expired wallet certificate must not
stop email delivery), so conf.validate(), which every run calls, refuses the same errors;
these checks report them at deploy time, with the warnings too.
"""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import conf


@checks.register("bulkjobs")
def check_engine_settings(app_configs, **kwargs):
    errors = []
    for name in conf.DEFAULTS:
        try:
            conf.get(name)
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="bulkjobs.E002"))
    if errors:
        # The combinations are judged on valid values only.
        return errors
    level = {True: checks.Error, False: checks.Warning}
    return [
        level[problem.error](problem.message, hint=problem.hint, id=problem.id)
        for problem in conf.combination_problems()
    ]
