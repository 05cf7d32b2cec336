"""gunicorn's settings for this app: `gunicorn -c gunicorn.conf.py config.wsgi`.

Behind a buffering proxy only (deploy/nginx.conf or deploy/apache.conf,
docs/operations.md "Running in production"): gunicorn reads each request from a thread
(gthread), and a client that sends its headers slowly holds that thread until `timeout`;
eight such clients took a gunicorn without a proxy down. nginx or Apache read the whole
request first and hand gunicorn complete ones over loopback, so slow clients cost the
proxy a connection each, not a worker. tests/processes/config/test_slow_clients.py
shows both.

Every value can be overridden from the environment (GUNICORN_<NAME>) or the command line.
"""

import multiprocessing
import os


def _env(name, default):
    return os.environ.get(f"GUNICORN_{name}", default)


# Loopback only: the proxy on this host is the only client.
bind = _env("BIND", "127.0.0.1:8000")
# Threads: a request waiting on the database or on an upload's parsing leaves the
# worker's other threads free; processes for the CPU (sign-in hashing, list parsing).
worker_class = "gthread"
workers = int(_env("WORKERS", min(2 * multiprocessing.cpu_count() + 1, 9)))
threads = int(_env("THREADS", 4))
# A request taking longer than this is killed with its worker (a send page with a very
# large list takes a few seconds; nothing legitimate takes a minute).
timeout = int(_env("TIMEOUT", 60))
graceful_timeout = int(_env("GRACEFUL_TIMEOUT", 30))
# The proxy keeps connections to gunicorn open between requests.
keepalive = int(_env("KEEPALIVE", 5))
# gunicorn's defaults, written down: a request line, the number and size of headers.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# Workers are replaced now and then, so slow growth of memory never adds up.
max_requests = int(_env("MAX_REQUESTS", 2000))
max_requests_jitter = 200
# X-Forwarded-* is trusted from the proxy on this host only.
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Files gunicorn writes (its control socket, logs if configured) like the app's own.
umask = 0o027
# The proxy logs requests; gunicorn's errors go to stderr (systemd's journal).
accesslog = None
errorlog = "-"
