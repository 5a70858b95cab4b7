"""hubsync settings: one env-driven module whose defaults just work on a fresh clone.

With no environment at all: DEBUG on, SQLite (WAL) and Celery's filesystem broker under var/, the sandbox on.
With DATABASE_URL / REDIS_URL: PostgreSQL and Redis. With DEBUG=false the secrets must be given explicitly.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HUBSYNC_VAR_DIR") or BASE_DIR / "var")  # empty (a blank .env line) = default
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)
TESTING = env_bool("HUBSYNC_TESTING", False)


def _local_secret(filename: str, make) -> str:
    """A secret generated once into var/ so the embedded default needs no set-up (never used with DEBUG off)."""
    path = VAR_DIR / filename
    if not path.exists():
        # web, worker and beat may start together on a fresh clone: write a private temp file and link it into
        # place, which fails if another process won the race, so all of them end up with the same key.
        tmp = VAR_DIR / f".{filename}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


if DEBUG:
    SECRET_KEY = os.environ.get("SECRET_KEY") or _local_secret("secret_key", lambda: secrets.token_urlsafe(50))
    HUBSYNC_ENCRYPTION_KEYS = env_list("HUBSYNC_ENCRYPTION_KEYS") or [_local_secret("encryption_key", _fernet_key)]
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
else:
    missing = [n for n in ("SECRET_KEY", "HUBSYNC_ENCRYPTION_KEYS", "ALLOWED_HOSTS") if not os.environ.get(n)]
    if missing:
        raise ImproperlyConfigured(f"DEBUG is off, so these must be set: {', '.join(missing)}")
    SECRET_KEY = os.environ["SECRET_KEY"]
    HUBSYNC_ENCRYPTION_KEYS = env_list("HUBSYNC_ENCRYPTION_KEYS")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# The sandbox (local HubSpot and Segment simulators) is on by default in development, off unless asked for
# in production.
SANDBOX = env_bool("SANDBOX", DEBUG)

PORT = int(os.environ.get("PORT", "8000"))
# Where this server is reached; the sandbox defaults of the HubSpot settings point here.
BASE_URL = os.environ.get("HUBSYNC_BASE_URL", f"http://127.0.0.1:{PORT}").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hubsync",
    "sources",
    "models_app",
    "mappings",
    "monitoring",
    "api",
    "sandbox",
    "sandbox.hubspot",
    "sandbox.segment",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "hubsync.middleware.SecurityHeadersMiddleware",
    "hubsync.middleware.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "hubsync.middleware.WorkspaceMiddleware",
    # Acts on /sandbox/ only: a foreign page's POST to the (CSRF-exempt, login-free) simulators is a 403.
    "sandbox.http.OriginCheckMiddleware",
]

ROOT_URLCONF = "hubsync.urls"
WSGI_APPLICATION = "hubsync.wsgi.application"

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
                "hubsync.context_processors.workspace",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------------------
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("HUBSYNC_SQLITE_PATH", str(VAR_DIR / "hubsync.sqlite3")),
            "OPTIONS": {
                # WAL lets the web process read while a worker writes; IMMEDIATE transactions avoid the
                # "database is locked" upgrade deadlock between concurrent writers.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            "TEST": {"NAME": os.environ.get("HUBSYNC_SQLITE_TEST_PATH", str(VAR_DIR / "test.sqlite3"))},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache, rate-limiter store -----------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if TESTING and REDIS_URL and os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("HUBSYNC_REDIS_PER_WORKER"):
    # Parallel test workers (pytest-xdist) each get a Redis database of their own, the one after the configured
    # one plus the worker's number, so that their brokers, caches and rate limiters never meet. The processes a
    # test starts (Celery worker, sandbox server) inherit the result.
    from urllib.parse import urlsplit, urlunsplit

    _parts = urlsplit(REDIS_URL)
    _db = int(_parts.path.strip("/") or 0) + 1 + int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
    REDIS_URL = urlunsplit(_parts._replace(path=f"/{_db}"))
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["HUBSYNC_REDIS_PER_WORKER"] = "1"
# The cache holds allauth's login-failure counters and used-TOTP memory: with DEBUG off it must be shared by every
# web process (`check --deploy` fails otherwise, hubsync.checks). Redis when REDIS_URL is set; without Redis,
# HUBSYNC_CACHE=database keeps it in the database (after `manage.py createcachetable`).
HUBSYNC_CACHE = os.environ.get("HUBSYNC_CACHE", "").strip().lower()
if REDIS_URL and HUBSYNC_CACHE != "database":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
elif HUBSYNC_CACHE == "database":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "hubsync_cache"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"visibility_timeout": 6 * 3600}
else:
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    # A hostname, though the transport ignores it, keeps kombu from warning on every connection.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # Idle queues are re-listed this often; 0.5 s keeps task start and the /healthz ping snappy.
        "polling_interval": 0.5,
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "extract"
CELERY_TASK_QUEUES_NAMES = ("extract", "deliver", "alerts")
# Time limits stay far below the broker's visibility timeout, so a task that is still running is never
# handed to a second worker.
CELERY_TASK_TIME_LIMIT = 3600
CELERY_TASK_SOFT_TIME_LIMIT = 3300
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = True

# --- accounts (django-allauth) --------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("ACCOUNT_EMAIL_VERIFICATION", "optional")
# allauth's rate limits stay on (its defaults); only False switches them off ({} would keep the defaults).
if env_bool("HUBSYNC_DISABLE_RATE_LIMITS", False):
    ACCOUNT_RATE_LIMITS = False
ACCOUNT_ADAPTER = "hubsync.adapters.AccountAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "hubsync"

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "hubsync <noreply@localhost>")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Segment sandbox ------------------------------------------------------------------------------------
# How the Segment sandbox's write keys look (sandbox/segment/models.py makes them; the product may not import the
# sandbox, so the convention is stated here): the Profile Space form recognises a sandbox key by its prefix and
# picks the sandbox region, and "Use the default sandbox space" adds the space that exists out of the box.
SANDBOX_SEGMENT_WRITE_KEY_PREFIX = "sbx_seg_"
SANDBOX_SEGMENT_DEFAULT_WRITE_KEY = "sbx_seg_DefaultWorkspaceKey00001"
SANDBOX_SEGMENT_DEFAULT_SPACE_NAME = "Default Profile Space"

# --- HubSpot --------------------------------------------------------------------------------------------
SANDBOX_HUBSPOT_CLIENT_ID = "hubsync-sandbox-app"
SANDBOX_HUBSPOT_CLIENT_SECRET = "hubsync-sandbox-secret"
HUBSPOT_CLIENT_ID = os.environ.get("HUBSPOT_CLIENT_ID", SANDBOX_HUBSPOT_CLIENT_ID if SANDBOX else "")
HUBSPOT_CLIENT_SECRET = os.environ.get("HUBSPOT_CLIENT_SECRET", SANDBOX_HUBSPOT_CLIENT_SECRET if SANDBOX else "")
# Empty means "the sandbox on this server" (resolved against BASE_URL at call time, so tests can move it).
HUBSPOT_API_BASE = os.environ.get("HUBSPOT_API_BASE", "" if SANDBOX else "https://api.hubapi.com").rstrip("/")
HUBSPOT_AUTHORIZE_URL = os.environ.get(
    "HUBSPOT_AUTHORIZE_URL", "" if SANDBOX else "https://app.hubspot.com/oauth/authorize"
)
# The sandbox HubSpot sends webhooks of every change to this server's receiver (BASE_URL + /hooks/hubspot/) for
# portals without a subscription of their own (sandbox page): on in development, off in tests (which subscribe
# explicitly).
SANDBOX_WEBHOOKS = env_bool("SANDBOX_WEBHOOKS", SANDBOX and not TESTING)
HUBSPOT_TOKEN_PATH = os.environ.get("HUBSPOT_TOKEN_PATH", "/oauth/v1/token")

# --- i18n, static ---------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- security (production) ------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Every script and stylesheet is a file under static/ (no inline <script>, on* handler or style attribute; htmx's
# injected indicator styles are switched off in base.html and live in app.css), so 'self' is enough. form-action
# is left open: the HubSpot connect form redirects to HubSpot's login page, which form-action would block.
HUBSYNC_CSP = os.environ.get(
    "HUBSYNC_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
)
# Powerful features the product never uses are off for it and anything it might embed (the clipboard copy of
# invitation links keeps clipboard-write's default, this origin).
HUBSYNC_PERMISSIONS_POLICY = os.environ.get(
    "HUBSYNC_PERMISSIONS_POLICY",
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
)
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}


# --- runtime: checks, static files in development, health ----------------------------------------------
# Refuse bad encryption keys at start-up rather than at the first decryption: a typo in
# HUBSYNC_ENCRYPTION_KEYS would otherwise surface as DecryptionError deep inside a sync.
def _validate_fernet_keys(keys: list[str]) -> None:
    from cryptography.fernet import Fernet

    for index, key in enumerate(keys):
        try:
            Fernet(key.encode())
        except Exception as exc:
            raise ImproperlyConfigured(
                f"HUBSYNC_ENCRYPTION_KEYS entry {index + 1} is not a valid Fernet key (32 url-safe base64 bytes): "
                "generate one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            ) from exc


_validate_fernet_keys(HUBSYNC_ENCRYPTION_KEYS)

# In development and tests static files are served straight from static/ (no collectstatic), so WhiteNoise
# must not look for (and warn about) a missing staticfiles/ directory.
WHITENOISE_USE_FINDERS = DEBUG or TESTING
WHITENOISE_AUTOREFRESH = DEBUG or TESTING

# Celery 5.x warns unless this is explicit; a worker started before Redis is up keeps retrying.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# /healthz: how long the broker connect and the worker ping may take before they count as down.
HEALTH_BROKER_TIMEOUT = float(os.environ.get("HEALTH_BROKER_TIMEOUT") or "2")
HEALTH_WORKER_TIMEOUT = float(os.environ.get("HEALTH_WORKER_TIMEOUT") or "1.5")
# /healthz answers from a report at most this old (one refresh per period across all web processes), and from
# the previous one, up to HEALTH_STALE_SECONDS old, while a refresh is running.
HEALTH_CACHE_SECONDS = float(os.environ.get("HEALTH_CACHE_SECONDS") or "5")
HEALTH_STALE_SECONDS = float(os.environ.get("HEALTH_STALE_SECONDS") or "30")
# Worker names, broker transport and error details of /healthz are shown to staff users and to requests with
# `Authorization: Bearer <this token>` (monitoring); everyone else gets the overall state only.
HUBSYNC_HEALTH_TOKEN = os.environ.get("HUBSYNC_HEALTH_TOKEN", "")
# Load balancers and container health checks probe /healthz over plain HTTP inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Extra beat dispatchers by dotted path (apps normally register theirs with hubsync.dispatch.register).
HUBSYNC_DISPATCHERS: list[str] = []
# --- accounts: extra settings (accounts helper) -----------------------------------------------------------
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[hubsync] "
ACCOUNT_USER_DISPLAY = "hubsync.adapters.user_display"
# After confirming the address by link, the user is logged in (same browser) instead of asked again.
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
# How long an invitation link stays valid (the model's default expiry reads this).
HUBSYNC_INVITATION_DAYS = int(os.environ.get("HUBSYNC_INVITATION_DAYS", "7"))
if TESTING:
    # Password hashing dominates test set-up time; tests do not need a slow hash.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# --- sources: HubSpot connect (wizard) ------------------------------------------------------------------
# requests-oauthlib and oauthlib log token requests and responses (client secret, codes, tokens) at DEBUG:
# keep them quiet even when LOG_LEVEL=DEBUG, so secrets never reach the logs.
LOGGING["loggers"].update({"requests_oauthlib": {"level": "WARNING"}, "oauthlib": {"level": "WARNING"}})
# --- extraction engine (sources/extraction/) -------------------------------------------------------------
# A running sync whose heartbeat (written with every committed page) is older than this is considered lost
# (worker killed, machine gone) and is taken over by the next enqueue / dispatcher tick.
HUBSYNC_RUN_STALE_SECONDS = int(os.environ.get("HUBSYNC_RUN_STALE_SECONDS", "120"))
# A queued run no worker picked up within this time (its broker message was lost) is replaced.
HUBSYNC_RUN_QUEUED_STALE_SECONDS = int(os.environ.get("HUBSYNC_RUN_QUEUED_STALE_SECONDS", "3600"))
# Incremental windows start this far before the cursor: HubSpot's search index lags behind writes.
HUBSYNC_SEARCH_OVERLAP_SECONDS = int(os.environ.get("HUBSYNC_SEARCH_OVERLAP_SECONDS", "300"))
# During long reads, deliveries are triggered at least every this many changed records.
HUBSYNC_NOTIFY_EVERY = int(os.environ.get("HUBSYNC_NOTIFY_EVERY", "5000"))
# Live updates (HubSpot webhooks, sources.live): events of one source and collection are gathered this long (whole
# seconds, the cache's expiry; 0 = none) before their records are read (one batch read for many changes); pending
# events older than a few windows, or claimed by a worker that died this long ago, are handed out again by the
# minute's sweep; applied events are kept this many days for the lag figures.
HUBSYNC_LIVE_COALESCE_SECONDS = float(os.environ.get("HUBSYNC_LIVE_COALESCE_SECONDS", "2"))
HUBSYNC_LIVE_CLAIM_SECONDS = int(os.environ.get("HUBSYNC_LIVE_CLAIM_SECONDS", "300"))
HUBSYNC_LIVE_EVENT_DAYS = int(os.environ.get("HUBSYNC_LIVE_EVENT_DAYS", "7"))
# The largest webhook body accepted (413 beyond): HubSpot sends at most 100 events (a few tens of KB).
HUBSYNC_WEBHOOK_MAX_BYTES = int(os.environ.get("HUBSYNC_WEBHOOK_MAX_BYTES", str(1024 * 1024)))
# The public base URL HubSpot calls (https://sync.example.com) when a reverse proxy changes scheme, host or port:
# the v3 signature covers the full URL HubSpot used. Empty: the URL as Django sees it (SECURE_PROXY_SSL_HEADER,
# USE_X_FORWARDED_HOST and USE_X_FORWARDED_PORT apply).
HUBSYNC_PUBLIC_URL = os.environ.get("HUBSYNC_PUBLIC_URL", "").rstrip("/")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
USE_X_FORWARDED_PORT = env_bool("USE_X_FORWARDED_PORT", False)
# Partitioned reads (sources/extraction/partitions.py): a full read of a collection of at least this many records
# is split into id ranges read concurrently, through the list and the search budgets at once, by this many
# fetcher threads per run (one HubSpot client each, all under the account's shared rate limiter).
HUBSYNC_PARTITION_MIN_RECORDS = int(os.environ.get("HUBSYNC_PARTITION_MIN_RECORDS", "5000"))
HUBSYNC_PARTITION_RECORDS = int(os.environ.get("HUBSYNC_PARTITION_RECORDS", "4000"))
HUBSYNC_PARTITION_MAX = int(os.environ.get("HUBSYNC_PARTITION_MAX", "64"))
HUBSYNC_FETCHERS = int(os.environ.get("HUBSYNC_FETCHERS", "12"))
# Celery tasks (sources.read_partitions, queue `extract`) sent to let other workers help with a run's partitions
# (PostgreSQL only: SQLite has one writer). 0 = the run's own worker reads every partition.
HUBSYNC_PARTITION_HELPERS = int(os.environ.get("HUBSYNC_PARTITION_HELPERS", "1"))

# --- HubSpot client and rate limiter (sources/hubspot/, sources/ratelimit.py) --------------------------
# Budgets per HubSpot account, shared by every worker (in Redis when REDIS_URL is set). 0 = unlimited
# (benchmarks against the sandbox with its limits off). HubSpot's OAuth-app budget is 110 per 10 s and search
# 5 per second; a smaller budget announced by X-HubSpot-RateLimit-Max is adopted automatically.
HUBSPOT_RATE_LIMIT = int(os.environ.get("HUBSPOT_RATE_LIMIT", "110"))
HUBSPOT_RATE_LIMIT_INTERVAL_MS = int(os.environ.get("HUBSPOT_RATE_LIMIT_INTERVAL_MS", "10000"))
HUBSPOT_SEARCH_RATE_LIMIT = int(os.environ.get("HUBSPOT_SEARCH_RATE_LIMIT", "5"))
HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS = int(os.environ.get("HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS", "1000"))
# Each slot is held at least this much longer than its window: HubSpot counts a request when it arrives, after a
# varying delay, and several requests in flight would otherwise meet a 429 now and then. Two 429s at the window's
# edge within four of its windows (40 s of the list's, 4 s of search's) widen the guard of that account and budget
# by 25 ms (up to 250 ms) on every worker; each minute without one narrows it a step (sources/ratelimit.py).
HUBSPOT_RATE_LIMIT_GUARD_MS = int(os.environ.get("HUBSPOT_RATE_LIMIT_GUARD_MS", "25"))
# auto (Redis when REDIS_URL, else in-process) | redis | local
HUBSPOT_RATE_LIMITER = os.environ.get("HUBSPOT_RATE_LIMITER", "auto")
# Pause all workers when X-HubSpot-RateLimit-Remaining drops to this fraction of Max (someone else spends it).
HUBSPOT_RATE_LIMIT_LOW_REMAINING = float(os.environ.get("HUBSPOT_RATE_LIMIT_LOW_REMAINING", "0.1"))
# Retries of 429 / 5xx / timeouts / resets: exponential backoff with full jitter, base and cap in seconds.
HUBSPOT_RETRY_BASE_SECONDS = float(os.environ.get("HUBSPOT_RETRY_BASE_SECONDS", "1.0"))
HUBSPOT_RETRY_CAP_SECONDS = float(os.environ.get("HUBSPOT_RETRY_CAP_SECONDS", "60"))
# Longest GET URL the client sends; longer property lists are read through batch/read (POST) instead (no 414).
HUBSPOT_MAX_URL_LENGTH = int(os.environ.get("HUBSPOT_MAX_URL_LENGTH", "4000"))
# HubSpot refuses search bodies over 3,000 characters; properties beyond that are read through batch/read.
HUBSPOT_SEARCH_MAX_BODY = int(os.environ.get("HUBSPOT_SEARCH_MAX_BODY", "3000"))
# Access tokens are refreshed from their stored expiry when less than this is left (HubSpot: 30 min tokens).
HUBSPOT_TOKEN_REFRESH_MARGIN_SECONDS = int(os.environ.get("HUBSPOT_TOKEN_REFRESH_MARGIN_SECONDS", "300"))
# urllib3 logs every request line at DEBUG, and HubSpot's token-info call carries the token in its path:
# keep that logger at INFO so no token reaches a log even with LOG_LEVEL=DEBUG (our own lines mask it).
LOGGING["loggers"]["urllib3"] = {"level": "INFO"}
# --- Delivery to Segment (mappings) ---------------------------------------------------------------------
# Retries of one batch: attempts in all, and the full-jitter backoff (seconds) between them. With the defaults
# a batch gives up after about a minute at worst, far below the stale-run limit below.
SEGMENT_MAX_ATTEMPTS = int(os.environ.get("SEGMENT_MAX_ATTEMPTS", "6"))
SEGMENT_BACKOFF_BASE = float(os.environ.get("SEGMENT_BACKOFF_BASE", "0.5"))
SEGMENT_BACKOFF_CAP = float(os.environ.get("SEGMENT_BACKOFF_CAP", "20"))
SEGMENT_TIMEOUT = float(os.environ.get("SEGMENT_TIMEOUT", "30"))
# Mirror rows read per query by the delivery engine (keyset pages ordered by change_seq).
DELIVERY_CHUNK_SIZE = int(os.environ.get("DELIVERY_CHUNK_SIZE", "2000"))
# A running delivery whose heartbeat is older than this was lost with its worker: the next delivery of the
# mapping marks it failed and takes over (heartbeats are written after every batch and every chunk).
DELIVERY_STALE_SECONDS = int(os.environ.get("DELIVERY_STALE_SECONDS", "600"))
# Batches sent concurrently by one delivery (results are still recorded in order).
DELIVERY_MAX_IN_FLIGHT = int(os.environ.get("DELIVERY_MAX_IN_FLIGHT", "3"))
# --- record history and the record debugger (sources/history.py, monitoring/debugger.py) -------------------
# Days of record history (what each sync changed, per record) kept for the record debugger; 0 = no history.
HUBSYNC_RECORD_HISTORY_DAYS = int(os.environ.get("HUBSYNC_RECORD_HISTORY_DAYS", "90"))
# --- Alerts (monitoring/alerts.py) ----------------------------------------------------------------------------
# Attempts per alert message (first try included) and the base of the full-jitter backoff between them, seconds.
ALERT_MAX_ATTEMPTS = int(os.environ.get("ALERT_MAX_ATTEMPTS", "5"))
ALERT_RETRY_BASE_SECONDS = float(os.environ.get("ALERT_RETRY_BASE_SECONDS", "10"))
# How long a webhook (Slack, ...) may take to answer one alert POST, seconds.
ALERT_WEBHOOK_TIMEOUT = float(os.environ.get("ALERT_WEBHOOK_TIMEOUT", "10"))
# Seconds the SMTP server may take for one alert e-mail.
ALERT_EMAIL_TIMEOUT = float(os.environ.get("ALERT_EMAIL_TIMEOUT", "10"))
# "Send test": at most this many per channel and per workspace within the window (seconds).
ALERT_TEST_LIMIT_PER_CHANNEL = int(os.environ.get("ALERT_TEST_LIMIT_PER_CHANNEL", "3"))
ALERT_TEST_LIMIT_PER_WORKSPACE = int(os.environ.get("ALERT_TEST_LIMIT_PER_WORKSPACE", "10"))
ALERT_TEST_WINDOW_SECONDS = int(os.environ.get("ALERT_TEST_WINDOW_SECONDS", "600"))
# Webhook hosts alerts may be sent to (hubsync/outbound.py). Empty: any host whose addresses are all public;
# "hooks.slack.com": that host only; ".example.com": the domain and its subdomains. Private, loopback, link-local
# and other special addresses are refused whatever this says.
ALERT_WEBHOOK_ALLOWED_HOSTS = env_list("HUBSYNC_WEBHOOK_ALLOWED_HOSTS")
# Tests and local development only: allow webhooks to 127.0.0.1 / ::1 (and plain http). Ignored unless DEBUG or
# HUBSYNC_TESTING is on.
ALERT_WEBHOOK_ALLOW_LOOPBACK = env_bool("HUBSYNC_WEBHOOK_ALLOW_LOOPBACK", False)
# --- REST API (api/): /api/v1/, workspace API tokens, problem details, OpenAPI -------------------------------
# Under /api/: routes are served with or without their trailing slash, and errors Django answers itself (no such
# URL, a crash) become problem details too. Outermost but the security headers, to see the others' answers.
MIDDLEWARE.insert(MIDDLEWARE.index("hubsync.middleware.SecurityHeadersMiddleware") + 1, "api.middleware.ApiMiddleware")
# Requests per API token (DRF's rate syntax: N/second|minute|hour|day), counted in the cache (Redis when set).
HUBSYNC_API_RATE = os.environ.get("HUBSYNC_API_RATE", "600/minute")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.auth.WorkspaceTokenPermission"],
    "DEFAULT_THROTTLE_CLASSES": ["api.auth.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser", "api.parsers.AnyJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "api.problems.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "hubsync API",
    "DESCRIPTION": "Everything the hubsync pages do, for scripts and CI. Authenticate with a workspace API token "
    "(Settings → API tokens): `Authorization: Bearer hs_…`. Errors are problem details (RFC 9457).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Operations are tagged (grouped in the docs) by what follows the workspace: sources, models, mappings, ...
    "SCHEMA_PATH_PREFIX": r"/api/v1(/workspaces/\{workspace_id\})?",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "api.schema.add_problem_responses"],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "hubsync.runbase.RunBase.Status",
        "SourceStatusEnum": "sources.models.Source.Status",
        "DeliveryStateStatusEnum": "mappings.models.DeliveryState.Status",
        "AlertStatusEnum": "hubsync.models.Alert.Status",
    },
}
