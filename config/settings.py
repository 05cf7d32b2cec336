"""Settings for the business-card bulk jobs project.

Every deployment-specific value comes from the environment (or a `.env` file beside
manage.py), read with django-environ. The defaults run the demo on a SQLite file under
`var/` with no other service.
"""

import importlib.util
import os
from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Values already in the environment win over the file, so a deployment's environment
# (systemd, Passenger) can override single lines of `.env`.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# Files this process creates (the SQLite database and its -wal/-shm, log files, keys and
# certificates, sent-email files, uploads) are readable by the owner and its group only:
# they hold addresses, sessions and keys. "027" makes files 0640 and directories 0750; a
# web server that serves STATIC_ROOT or MEDIA_ROOT itself must then be in the app's
# group. Empty leaves the umask the process was started with.
FILE_UMASK = env.str("FILE_UMASK", default="027")
if FILE_UMASK:
    try:
        os.umask(int(FILE_UMASK, 8))
    except ValueError:
        raise ImproperlyConfigured(
            f"FILE_UMASK must be an octal mask such as 027 or 077, got {FILE_UMASK!r}."
        ) from None
# Read after `.env`, so VAR_DIR can be set there like every other setting.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        # A key everyone can read (it would be in the repository) lets anyone forge
        # sessions and signed links, so production never falls back to one.
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. In production, set it (in the environment or "
            "in .env beside manage.py) to a long random value, e.g. the output of "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`. "
            "For local development, set DJANGO_DEBUG=1 instead, or use `make demo` / "
            "`make run`, which generate a key in var/."
        )
    # DEBUG only: check --deploy flags this key (its prefix) as well as DEBUG itself.
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production-0123456789"
# Old keys still accepted when verifying (sessions, unsubscribe links already sent) while
# only SECRET_KEY signs: rotate by moving the old key here.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS. Production runs behind HTTPS, so every switch defaults to on unless DEBUG is
# on (runserver speaks plain HTTP). Behind a proxy that terminates TLS, set
# DJANGO_SECURE_PROXY_SSL_HEADER so Django knows a request came in over HTTPS.
_https = not DEBUG
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=_https)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=_https)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=_https)
# One year once the site is known to work over HTTPS; 0 turns HSTS off.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000 if _https else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_https)
# Only allows submitting the domain to the browsers' preload list (hstspreload.org); set
# these false if a subdomain of the site's domain still serves plain HTTP.
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=_https)
# "HTTP_X_FORWARDED_PROTO,https": trust that header, which the proxy must always set.
_proxy_ssl_header = env.list("DJANGO_SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER must be a header and its HTTPS value, "
            "e.g. HTTP_X_FORWARDED_PROTO,https."
        )
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header)

# Absolute base URL used in emails, vCards and wallet passes (no trailing slash).
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "cards",
    "bulkjobs",
    "emails",
    "wallet",
]
if importlib.util.find_spec("anymail") is not None:
    # Its system checks; the ESP backends and webhooks work without it too.
    INSTALLED_APPS.append("anymail")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The browser's language (Accept-Language) where no company applies...
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Signed-in pages and exports are never cached by a proxy or kept on disk.
    "config.middleware.PrivateNoStoreMiddleware",
    # ...and the signed-in user's company's language and time zone where one does.
    "config.middleware.CompanyLocaleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout found during sign-in into the response.
    "axes.middleware.AxesMiddleware",
]

# Scripts, styles and images from our own origin only, nothing inline (config.middleware
# says why), no plugins, forms and framing limited to ourselves. Empty turns it off.
CONTENT_SECURITY_POLICY = env.str(
    "DJANGO_CONTENT_SECURITY_POLICY",
    default=(
        "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
)

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "bulkjobs.web.context_processors.company_roles",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# Database: DATABASE_URL (postgres://, mysql://, sqlite:///). The default is a SQLite
# file in WAL mode, so cron runs and the web app can read and write at the same time.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.mysql":
    # PyMySQL stands in for mysqlclient so MariaDB/MySQL work without C headers on shared
    # hosting; Django's mysql backend then imports it as MySQLdb. Only here: other
    # databases' cron runs do not pay its import (30 ms of an idle run's 0.6 s).
    try:
        import pymysql

        pymysql.install_as_MySQLdb()
    except ImportError:  # MySQL support is not installed
        pass
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            # IMMEDIATE takes the write lock at BEGIN, so concurrent writers wait for
            # the busy timeout instead of failing with "database is locked" mid-way.
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
        }
    )
    # Tests run subprocesses against the test database, so it must be a file; the pid
    # keeps parallel test sessions on one checkout apart.
    import os

    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.mysql":
    _db.setdefault("OPTIONS", {}).update(
        {"charset": "utf8mb4", "isolation_level": "read committed"}
    )
    _db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
_db.setdefault("CONN_MAX_AGE", 0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Sign-in throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is refused, even with the right password, for
# LOGIN_COOLOFF_MINUTES. Counting the pair (not the address alone) keeps one office
# behind a NAT, or every user behind a proxy, from locking each other out.
AUTHENTICATION_BACKENDS = [
    # Refuses a locked-out address or username before any password is hashed.
    "config.signin.ThrottleBackend",
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Beyond that pair (config/signin.py): failures from one address whatever the usernames,
# and for one username from any address, lock that address or username out for
# LOGIN_LOCKOUT_MINUTES, doubling with each lockout up to LOGIN_LOCKOUT_MAX_MINUTES.
# The address limit is above the pair's, so one office behind a NAT where several people
# mistype is not locked out together; it stops one address guessing across usernames.
LOGIN_ADDRESS_FAILURE_LIMIT = env.int("LOGIN_ADDRESS_FAILURE_LIMIT", default=20)
LOGIN_USERNAME_FAILURE_LIMIT = env.int("LOGIN_USERNAME_FAILURE_LIMIT", default=10)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=5)
LOGIN_LOCKOUT_MAX_MINUTES = env.int("LOGIN_LOCKOUT_MAX_MINUTES", default=24 * 60)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.auth.lockout_response"
# Log only what a lockout is keyed on (username, address), and no start-up banner.
AXES_VERBOSE = False
# Axes' own admin offers actions that declare no permission (a view-only operator could
# clear every lockout); operators list and lift lockouts with its commands instead
# (manage.py axes_list_attempts, axes_reset_username).
AXES_ENABLE_ADMIN = False

# The client's address (config.throttle): REMOTE_ADDR, or behind a reverse proxy the
# header that proxy sets itself, overwriting the client's ("HTTP_X_REAL_IP" with nginx's
# `proxy_set_header X-Real-IP $remote_addr`). Only set it when every request comes
# through that proxy: otherwise anyone can name any address. Sign-in throttling and the
# per-address limits below count this address.
CLIENT_IP_HEADER = env.str("DJANGO_CLIENT_IP_HEADER", default="")
AXES_CLIENT_IP_CALLABLE = "config.throttle.client_ip"
# Requests per client address (an IPv6 client's /64) to the endpoints anyone can reach
# without signing in; beyond it they answer 429. "0" turns a limit off.
ESP_WEBHOOK_RATE_LIMIT = env.str("ESP_WEBHOOK_RATE_LIMIT", default="120/min")
UNSUBSCRIBE_RATE_LIMIT = env.str("UNSUBSCRIBE_RATE_LIMIT", default="60/min")
APPLE_REGISTRATION_RATE_LIMIT = env.str("APPLE_REGISTRATION_RATE_LIMIT", default="60/min")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "bulkjobs:dashboard"
LOGOUT_REDIRECT_URL = "login"

# Languages: each company has its own (Company.language), and its time zone
# (Company.time_zone) for the times on its pages; visitors outside a company (the
# sign-in page) get their browser's language, or LANGUAGE_CODE, and TIME_ZONE.
# docs/languages.md says how to add one.
LANGUAGE_CODE = "en-us"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
# The project's own translations (pages, emails, wallet pass labels): locale/.
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
# The country of phone numbers typed without a country code, for companies that set no
# country of their own (Company.country; cards/phones.py).
DEFAULT_PHONE_REGION = env.str("DEFAULT_PHONE_REGION", default="DE").upper()
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))

# Email. SMTP by default; EMAIL_URL (smtp://user:pass@host:port, smtp+tls://,
# smtp+ssl://) or the individual EMAIL_* variables configure it.
_email = env.email_url("EMAIL_URL", default="smtp://localhost:25")


def _email_part(name, cast, default):
    """EMAIL_<name> overrides EMAIL_URL's part only when it has a value: an empty line
    such as `EMAIL_HOST_USER=` in .env would otherwise replace the URL's login with ""."""
    if not os.environ.get(name, "").strip():
        return default
    return cast(name)


EMAIL_BACKEND = _email_part("EMAIL_BACKEND", env.str, _email["EMAIL_BACKEND"])
EMAIL_HOST = _email_part("EMAIL_HOST", env.str, _email["EMAIL_HOST"])
EMAIL_PORT = _email_part("EMAIL_PORT", env.int, _email["EMAIL_PORT"])
EMAIL_HOST_USER = _email_part("EMAIL_HOST_USER", env.str, _email["EMAIL_HOST_USER"])
EMAIL_HOST_PASSWORD = _email_part("EMAIL_HOST_PASSWORD", env.str, _email["EMAIL_HOST_PASSWORD"])
EMAIL_USE_TLS = _email_part("EMAIL_USE_TLS", env.bool, _email.get("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = _email_part("EMAIL_USE_SSL", env.bool, _email.get("EMAIL_USE_SSL", False))
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=20.0)
# A batch reconnects after this many error replies without a delivery, before the
# server's own error limit slows every reply down (Postfix: smtpd_soft_error_limit = 10).
EMAIL_RECONNECT_AFTER_REJECTIONS = env.int("EMAIL_RECONNECT_AFTER_REJECTIONS", default=5)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "sent-emails"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Business Cards <cards@example.com>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Starts the subject of the operators' alerts (ADMINS).
EMAIL_SUBJECT_PREFIX = env.str("EMAIL_SUBJECT_PREFIX", default="[Business Cards] ")
# Bounces read back (docs/bounces.md): with BOUNCE_ADDRESS each email's envelope sender
# is a signed VERP address bounces+<token>@…, and `manage.py process_bounces` reads what
# comes back (--stdin from a pipe alias, --maildir, or --imap from BOUNCE_IMAP_URL,
# imaps://user:password@host/INBOX).
BOUNCE_ADDRESS = env.str("BOUNCE_ADDRESS", default="")
BOUNCE_IMAP_URL = env.str("BOUNCE_IMAP_URL", default="")
# Right-hand side of Message-IDs; defaults to DEFAULT_FROM_EMAIL's domain.
EMAIL_MESSAGE_ID_DOMAIN = env.str("EMAIL_MESSAGE_ID_DOMAIN", default="")
# The name the SMTP client greets with (EHLO); empty: this host's fully qualified name,
# or DEFAULT_FROM_EMAIL's domain where the host has none (never "localhost").
EMAIL_HELO_NAME = env.str("EMAIL_HELO_NAME", default="")
# DKIM signing by the app (emails/signing.py, docs/sending-domain.md): all three, or none
# when the relay signs (then say so with EMAIL_RELAY_SIGNS=1 for check --deploy).
DKIM_DOMAIN = env.str("DKIM_DOMAIN", default="")
DKIM_SELECTOR = env.str("DKIM_SELECTOR", default="")
DKIM_PRIVATE_KEY_FILE = env.str("DKIM_PRIVATE_KEY_FILE", default="")
EMAIL_RELAY_SIGNS = env.bool("EMAIL_RELAY_SIGNS", default=False)
# The operator's legal details (Impressum), at the foot of every card email.
PLATFORM_IMPRINT = env.str("PLATFORM_IMPRINT", default="", multiline=True)
# The mail server's own limit ("500/h" on shared hosting, "20/s"), shared by every
# processor on every host through the database; empty or 0: none. Checked when used.
EMAIL_RATE_LIMIT = env.str("EMAIL_RATE_LIMIT", default="")
# The most recipients one email job takes (a pasted or uploaded list, or the cards sent
# to their holders). The send page takes lists of up to EMAIL_MAX_RECIPIENTS x 100 bytes
# (10 MB at the default) and twice as many lines; docs/performance.md has what a job of
# this size costs. EMAIL_MAX_RECIPIENTS, its earlier name, is still read.
EMAIL_MAX_RECIPIENTS = env.int(
    "BULKJOBS_EMAIL_MAX_RECIPIENTS", default=env.int("EMAIL_MAX_RECIPIENTS", default=100_000)
)
# A send to more recipients than this is reviewed before it is queued (a summary, the
# email as sent, a test to oneself); "Review first" on the send page asks for it anyway.
EMAIL_REVIEW_THRESHOLD = env.int("BULKJOBS_EMAIL_REVIEW_THRESHOLD", default=100)

# An ESP's API instead of SMTP: django-anymail, an optional extra (requirements-esp.txt),
# with EMAIL_BACKEND=anymail.backends.<esp>.EmailBackend. Every ANYMAIL_<NAME> variable
# becomes ANYMAIL["<NAME>"] (ANYMAIL_POSTMARK_SERVER_TOKEN, ANYMAIL_MAILGUN_API_KEY,
# ANYMAIL_WEBHOOK_SECRET...); "true" and "false" become booleans.
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): {"true": True, "false": False}.get(value.lower(), value)
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_")
}

# Job engine knobs, passed through as text when set: bulkjobs/conf.py validates them when
# a command uses them (durations accept decimals; counts are whole numbers) and names the
# variable in its error.
BULKJOBS = {
    name: value
    for name in (
        "EMAIL_BATCH_SIZE",
        "WALLET_BATCH_SIZE",
        "EMAIL_CONCURRENCY",
        "WALLET_CONCURRENCY",
        "EMAIL_CONNECTIONS",
        "WALLET_CONNECTIONS",
        "EMAIL_MAX_CONNECTIONS",
        "EMAIL_KEEP_CONNECTIONS_SECONDS",
        "MARK_AHEAD",
        "EMAIL_COMPANY_RATE",
        "WALLET_COMPANY_RATE",
        "MAX_SECONDS",
        "INACTIVE_MINUTES",
        "STUCK_MINUTES",
        "MAX_ATTEMPTS",
        "RETRY_BASE_SECONDS",
        "RETRY_MAX_SECONDS",
        "EMAIL_RETRY_SCHEDULE",
        "PAUSE_LIMIT_HOURS",
        "LOCK_TIMEOUT_SECONDS",
        "STATEMENT_TIMEOUT_SECONDS",
        "ALERT_PAUSED_HOURS",
        "PROCESSOR_STALE_MINUTES",
        "ALERT_WEBHOOK_TIMEOUT",
        "RETENTION_DAYS",
    )
    if (value := env.str(f"BULKJOBS_{name}", default=""))
}

# Alerts (bulkjobs/ops/alerts.py): jobs that finish with failures, expire or stay paused are
# emailed to their creator and the company's admins; a processor that stops running is
# emailed to ADMINS. BULKJOBS_ALERT_DIGEST=true sends each person one email a day listing
# the day's events instead. BULKJOBS_ALERT_WEBHOOK_URL, when set, also receives every
# alert as JSON ({"text": ...}, what a Slack or Mattermost incoming webhook expects).
BULKJOBS_ALERTS = env.bool("BULKJOBS_ALERTS", default=True)
BULKJOBS_ALERT_DIGEST = env.bool("BULKJOBS_ALERT_DIGEST", default=False)
BULKJOBS_ALERT_WEBHOOK_URL = env.str("BULKJOBS_ALERT_WEBHOOK_URL", default="")
# The platform's operators: "Jane Doe <jane@example.com>, ops@example.com".
ADMINS = getaddresses([env.str("ADMINS", default="")])
ADMINS = [(name, address) for name, address in ADMINS if address]

# Seconds between the /background-jobs/ page's refreshes (while the tab is visible).
BULKJOBS_DASHBOARD_POLL_SECONDS = env.int("BULKJOBS_DASHBOARD_POLL_SECONDS", default=10)

# Logging: console plus a rotating file. Job lines are logged under the names
# ProcessBulkEmailJob / ProcessBulkWalletApiJob so `grep ProcessBulk` finds them.
LOG_FILE = env.str("LOG_FILE", default=str(VAR_DIR / "log" / "app.log"))
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
Path(LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s"},
    },
    # Recipients are logged by domain only, even inside a provider's quoted reply.
    "filters": {
        "redact_addresses": {"()": "bulkjobs.ops.logredact.RedactEmailAddresses"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_addresses"],
            "level": env.str("LOG_CONSOLE_LEVEL", default="INFO"),
        },
        "file": {
            # A full disk is reported once, not as a traceback per line.
            "class": "bulkjobs.ops.logfiles.LogFileHandler",
            "filename": LOG_FILE,
            "maxBytes": env.int("LOG_MAX_BYTES", default=10 * 1024 * 1024),
            "backupCount": env.int("LOG_BACKUP_COUNT", default=5),
            "formatter": "plain",
            "filters": ["redact_addresses"],
            "encoding": "utf-8",
        },
    },
    "root": {"handlers": ["console", "file"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": "INFO"},
    },
}

# --- Wallet ---
# Apple Wallet (pkpass signing, PassKit web service, APNs) and the wallet job kind.
# Everything is optional: a platform whose settings are missing is reported as "not
# configured" (wallet.services.platform_status) and skipped. File settings are paths.
# Pass Type ID certificate + key as PEM files, or both in one PKCS#12 file.
APPLE_PASS_CERT = env.str("APPLE_PASS_CERT", default="")
APPLE_PASS_KEY = env.str("APPLE_PASS_KEY", default="")
APPLE_PASS_KEY_PASSWORD = env.str("APPLE_PASS_KEY_PASSWORD", default="")
APPLE_PASS_P12 = env.str("APPLE_PASS_P12", default="")
APPLE_PASS_P12_PASSWORD = env.str("APPLE_PASS_P12_PASSWORD", default="")
# The Apple WWDR intermediate that issued the pass certificate (G4 for certificates
# issued after 2022-01-27), PEM or DER.
APPLE_WWDR_CERT = env.str("APPLE_WWDR_CERT", default="")
APPLE_TEAM_ID = env.str("APPLE_TEAM_ID", default="")
APPLE_PASS_TYPE_ID = env.str("APPLE_PASS_TYPE_ID", default="")
# Base URL devices call (PassKit appends "v1/..."); must be HTTPS in production.
APPLE_WEB_SERVICE_URL = env.str("APPLE_WEB_SERVICE_URL", default=SITE_URL + "/wallet/apple/")
# APNs: token auth (ES256 .p8 key + key id) when APNS_KEY_FILE is set, otherwise
# certificate auth with the pass certificate. APNS_CA_FILE, when set, is the only CA
# bundle trusted for APNs (tests, TLS-intercepting proxies); empty means the system store.
APNS_BASE_URL = env.str("APNS_BASE_URL", default="https://api.push.apple.com")
APNS_KEY_FILE = env.str("APNS_KEY_FILE", default="")
APNS_KEY_ID = env.str("APNS_KEY_ID", default="")
APNS_CA_FILE = env.str("APNS_CA_FILE", default="")
APNS_TIMEOUT = env.float("APNS_TIMEOUT", default=10.0)
# Pushes per period shared by every process ("100/s"); Apple publishes no limit, so none.
APNS_RATE_LIMIT = env.str("APNS_RATE_LIMIT", default="")
# Which APNs environment APNS_BASE_URL reaches: "auto" (production exactly for
# api.push.apple.com), or "production" / "sandbox" for a relay (wallet/apple/apns_conf.py).
APNS_ENVIRONMENT = env.str("APNS_ENVIRONMENT", default="auto")
# PassKit web service limits: the pass's authentication token is in every public pass
# download, so anyone may call these endpoints (wallet/apple/views.py says why).
APPLE_MAX_DEVICES_PER_PASS = env.int("APPLE_MAX_DEVICES_PER_PASS", default=100)
APPLE_LOG_REQUESTS_PER_MINUTE = env.int("APPLE_LOG_REQUESTS_PER_MINUTE", default=10)
# --- end Wallet ---

# --- Google Wallet ---
# Google Wallet REST sync and "Add to Google Wallet" links (wallet/google/). Off until
# the issuer id and a service-account key (a JSON key file path, or the JSON itself) are
# set; wallet.google reads these lazily and names whatever is missing.
GOOGLE_WALLET_ISSUER_ID = env.str("GOOGLE_WALLET_ISSUER_ID", default="")
GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = env.str("GOOGLE_WALLET_SERVICE_ACCOUNT_FILE", default="")
GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = env.str("GOOGLE_WALLET_SERVICE_ACCOUNT_JSON", default="")
GOOGLE_WALLET_BASE_URL = env.str(
    "GOOGLE_WALLET_BASE_URL", default="https://walletobjects.googleapis.com/walletobjects/v1"
)
# Overrides the key's token_uri (tests point it at a loopback OAuth server).
GOOGLE_WALLET_TOKEN_URI = env.str("GOOGLE_WALLET_TOKEN_URI", default="")
# Sites allowed to show the save button (comma-separated); empty means SITE_URL.
GOOGLE_WALLET_ORIGINS = env.list("GOOGLE_WALLET_ORIGINS", default=[])
GOOGLE_WALLET_TIMEOUT = env.float("GOOGLE_WALLET_TIMEOUT", default=15.0)
# API requests per period shared by every process (Google allows 20/s); 0 turns it off.
GOOGLE_WALLET_RATE_LIMIT = env.str("GOOGLE_WALLET_RATE_LIMIT", default="20/s")
# Pass logo URL; empty uses SITE_URL + static "wallet/google-logo.png" when that file
# is shipped, otherwise no logo (Google shows the card title's initial).
GOOGLE_WALLET_LOGO_URL = env.str("GOOGLE_WALLET_LOGO_URL", default="")
# The passes' colour on both platforms for companies without their own brand colour
# (Company.brand_color; wallet/branding.py). GOOGLE_WALLET_BACKGROUND_COLOR is its older
# name, still read.
WALLET_BRAND_COLOR = env.str(
    "WALLET_BRAND_COLOR", default=env.str("GOOGLE_WALLET_BACKGROUND_COLOR", default="#142850")
)
# --- end Google Wallet ---
