"""The processing commands' options, checked in-process (the runs `--until-empty` makes
are in tests/processes/engine/test_until_empty.py)."""

import pytest
from django.core.management import CommandError, call_command


def test_loop_and_until_empty_exclude_each_other():
    with pytest.raises(CommandError, match="not both"):
        call_command("process_email_jobs", "--until-empty", "--loop")
