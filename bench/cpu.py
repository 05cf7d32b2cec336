"""CPU time of the processes a benchmark runs beside, read from /proc (Linux).

    server_cpu_seconds()  the database servers' processes (postgres, mariadbd, mysqld)

A benchmark reads it before and after the timed part: the difference is what the
database spent on the work, the part of "CPU per email" no client-side counter sees.
"""

import os
from pathlib import Path

DATABASE_SERVERS = ("postgres", "mariadbd", "mysqld")


def cpu_seconds_of(names):
    """CPU seconds (user and system) used so far by every living process whose command
    name is one of `names`, with their ended children's."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(")")
        except OSError:
            continue
        if head.partition("(")[2] in names:
            # utime, stime, and the children's it waited for: a server's connection
            # processes that ended count in their parent's.
            ticks += sum(int(field) for field in rest.split()[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds():
    return cpu_seconds_of(DATABASE_SERVERS)
