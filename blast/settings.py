"""Settings for the Blast platform.

Everything comes from the environment through the typed helpers in
``blast.env``; the defaults run a single machine out of the box (SQLite in
the project folder, Redis on localhost). Every policy number of the
connection engine is a setting whose default is the seed's value.

One section per concern, each setting defined once, with its default, in
its section: Django core, security, database, Redis/Channels/Celery, the
API, the connection engine's policies, monitoring, messages and campaigns,
logging. Reading this file creates nothing (no folder, no file): the run
folder and its keys are made by ``scripts/ensure-keys.sh``.

About 500 lines because every default of the platform lives here, once,
with the comment that says what it means; splitting it would only spread
the one table an operator reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

from blast.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Django core ----------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
# Files the platform keeps on a single machine: the keys `make run` and
# `make test` generate, the SQLite test databases.
RUN_DIR = Path(env_str("BLAST_RUN_DIR", str(BASE_DIR / ".run")))
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "csp",
    "instances",
    "api",
    "campaigns",
    "monitoring",
    "engine",
    "simulator",
    "media",
    # The API docs page's JavaScript and CSS, served from this host (no CDN).
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "blast.urls"
WSGI_APPLICATION = "blast.wsgi.application"
ASGI_APPLICATION = "blast.asgi.application"

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
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("BLAST_MAX_BODY_BYTES", 2_621_440, minimum=1024)

# --- Media (docs/API.md, "Media") -------------------------------------------

# Where a tenant's files are kept: this folder, or an S3-compatible bucket
# when BLAST_MEDIA_S3_BUCKET is set (credentials as boto3 reads them:
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or the machine's role).
BLAST_MEDIA_ROOT = env_str("BLAST_MEDIA_ROOT", str(RUN_DIR / "media"))
BLAST_MEDIA_S3_BUCKET = env_str("BLAST_MEDIA_S3_BUCKET", "")
BLAST_MEDIA_S3_ENDPOINT_URL = env_str("BLAST_MEDIA_S3_ENDPOINT_URL", "")
BLAST_MEDIA_S3_REGION = env_str("BLAST_MEDIA_S3_REGION", "")
_MEDIA_STORAGE = (
    {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": BLAST_MEDIA_S3_BUCKET,
            "endpoint_url": BLAST_MEDIA_S3_ENDPOINT_URL or None,
            "region_name": BLAST_MEDIA_S3_REGION or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
    if BLAST_MEDIA_S3_BUCKET
    else {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": BLAST_MEDIA_ROOT, "base_url": None},
    }
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    "media": _MEDIA_STORAGE,
}
# The largest file a message may carry (each type has its own lower limit
# too: images 5 MiB, audio and video 16 MiB).
BLAST_MEDIA_MAX_BYTES = env_int("BLAST_MEDIA_MAX_BYTES", 16 * 1024 * 1024, minimum=1024)
# How long a gateway's link to a file works (a fresh one goes with every send).
BLAST_MEDIA_LINK_TTL_S = env_float("BLAST_MEDIA_LINK_TTL_S", 900.0, minimum=1.0)
# Fetching a file by URL: the time limit, and whether private addresses may
# be fetched (off: only public hosts; on for files on the platform's own network).
BLAST_MEDIA_FETCH_TIMEOUT_S = env_float("BLAST_MEDIA_FETCH_TIMEOUT_S", 20.0, minimum=0.5)
BLAST_MEDIA_FETCH_PRIVATE = env_bool("BLAST_MEDIA_FETCH_PRIVATE", False)
# Where gateways reach this platform's web process (for the media links).
BLAST_PUBLIC_URL = env_str("BLAST_PUBLIC_URL", f"http://127.0.0.1:{env_str('WEB_PORT', '8000')}")

# --- Security (docs/OPERATIONS.md, "Security") ----------------------------


def _kept_secret(name: str) -> str:
    """A key kept in RUN_DIR by `make run` / `make test`; empty when there is none."""
    try:
        return (RUN_DIR / name).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""


# A public constant, so only for DEBUG: without DEBUG the platform refuses to
# start with it (or with no key at all).
DEVELOPMENT_SECRET_KEY = "blast-development-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", "") or _kept_secret("secret-key")
if not SECRET_KEY or SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set (or is the public development key): set SECRET_KEY to a long random "
            f"value, or keep one in {RUN_DIR / 'secret-key'} as `make run` does; DEBUG=1 allows the development key"
        )
    SECRET_KEY = DEVELOPMENT_SECRET_KEY
# Keys that encrypt instance tokens and webhook secrets at rest (instances.tokens),
# separate from SECRET_KEY: a comma-separated list, the first encrypts, every
# one decrypts; rotate by putting a new key first and running
# `manage.py rotate_token_key`, then drop the old one.
BLAST_TOKEN_KEY = env_list("BLAST_TOKEN_KEY", []) or [key for key in [_kept_secret("token-key")] if key]
if not BLAST_TOKEN_KEY and not DEBUG:
    raise ImproperlyConfigured(
        "BLAST_TOKEN_KEY is not set: set it to a long random value (a comma-separated list while rotating), "
        f"or keep one in {RUN_DIR / 'token-key'} as `make run` does"
    )

# Served over HTTPS, directly or behind a proxy that terminates TLS: HSTS and
# cookies sent only over HTTPS. BLAST_PROXY_SSL_HEADER trusts the proxy's
# X-Forwarded-Proto (set it only when the proxy always sets that header).
BLAST_HTTPS = env_bool("BLAST_HTTPS", False)
if env_bool("BLAST_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if BLAST_HTTPS:
    SECURE_HSTS_SECONDS = env_int("BLAST_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("BLAST_HSTS_INCLUDE_SUBDOMAINS", False)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("BLAST_SSL_REDIRECT", False)
    # Probes and scrapers often speak plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^health", r"^metrics$"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts only from this host or with the
# response's nonce; inline style attributes are allowed (the admin's badges).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("BLAST_PASSWORD_MIN_LENGTH", 10, minimum=8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed logins (instances.throttle, instances.login): the admin refuses a user
# name from one address after LIMIT failures in WINDOW (an address after 4x,
# a user name from anywhere after 10x); the API refuses an address after
# AUTH_FAILURE_LIMIT bad keys in AUTH_FAILURE_WINDOW. 0 turns a limit off.
BLAST_LOGIN_FAILURE_LIMIT = env_int("BLAST_LOGIN_FAILURE_LIMIT", 5, minimum=0)
BLAST_LOGIN_FAILURE_WINDOW_S = env_float("BLAST_LOGIN_FAILURE_WINDOW_S", 900.0, minimum=1)
BLAST_AUTH_FAILURE_LIMIT = env_int("BLAST_AUTH_FAILURE_LIMIT", 30, minimum=0)
BLAST_AUTH_FAILURE_WINDOW_S = env_float("BLAST_AUTH_FAILURE_WINDOW_S", 60.0, minimum=1)

# Development and tests only: status and alert webhooks may target loopback
# and private addresses (monitoring.outbound). Never in production.
BLAST_WEBHOOK_ALLOW_PRIVATE = env_bool("BLAST_WEBHOOK_ALLOW_PRIVATE", False)

# --- Database -------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    # 0 by default: under ASGI every request runs in a thread of its own, so a
    # persistent connection per thread piles up until the server refuses more.
    # The connection worker, one database thread per process, keeps its own
    # connection open (BLAST_WORKER_CONN_MAX_AGE_S).
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0))
except Exception as exc:  # dj-database-url raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # Five processes write at once on a single machine: WAL lets readers run
    # beside the writer, IMMEDIATE transactions take the write lock up front
    # (no lock upgrade deadlock), and the timeout makes writers queue.
    _database["CONN_MAX_AGE"] = 0
    _database["OPTIONS"] = {
        "timeout": env_float("SQLITE_BUSY_TIMEOUT_S", 30.0, minimum=0),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
    # A file (not memory) so that worker processes started by integration
    # tests share it; one per test run, so that runs never lock each other.
    _database["TEST"] = {"NAME": str(RUN_DIR / f"test-db-{os.getpid()}.sqlite3")}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, Channels, Celery ---------------------------------------------

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix://, got {REDIS_URL!r}")
# Prefix of every Redis key the platform writes (leases, epochs, rate limits).
BLAST_REDIS_PREFIX = env_str("BLAST_REDIS_PREFIX", "blast")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [REDIS_URL],
            "prefix": env_str("BLAST_CHANNEL_PREFIX", "blast:asgi"),
            "capacity": env_int("BLAST_CHANNEL_CAPACITY", 1000, minimum=100),
            "expiry": 60,
        },
    },
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Beat reads its jobs from the database (django-celery-beat); the jobs are
# those of instances.schedules, created after `migrate`, tuned in the admin.
CELERY_BEAT_SCHEDULER = "blast.beat:ResilientDatabaseScheduler"
# django-celery-beat writes last_run_at to the database only when it syncs
# (every 3 minutes by default); syncing after every few dispatched tasks keeps
# /health's beat check accurate to seconds for a few small writes.
CELERY_BEAT_SYNC_EVERY = env_int("BLAST_BEAT_SYNC_EVERY", 4, minimum=1)

# --- API (docs/API.md) ----------------------------------------------------

# Lists are paginated: ?page=N&page_size=M (at most the maximum).
BLAST_API_PAGE_SIZE = env_int("BLAST_API_PAGE_SIZE", 50, minimum=1, maximum=1000)
BLAST_API_MAX_PAGE_SIZE = env_int("BLAST_API_MAX_PAGE_SIZE", 200, minimum=1, maximum=1000)
# An API key's last-used time is written at most this often.
BLAST_API_KEY_TOUCH_INTERVAL_S = env_float("BLAST_API_KEY_TOUCH_INTERVAL_S", 60.0, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Closed by default: a DRF view answers only to a tenant's API key unless
    # it says otherwise (an open endpoint sets its own permission_classes).
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.authentication.IsTenantClient"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "api.exceptions.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "PAGE_SIZE": BLAST_API_PAGE_SIZE,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Blast API",
    "DESCRIPTION": (
        "Run messaging instances: create them on an allowed gateway, connect and pair them, watch their "
        "circuit breakers. Authenticate with `Authorization: Bearer <API key>`."
    ),
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and the docs pages are public; the docs' assets come from
    # drf_spectacular_sidecar.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "InstanceStatusEnum": "instances.models.Status",
        "BreakerStateEnum": "instances.models.BreakerState",
        "EventKindEnum": "instances.models.EventKind",
        "ReasonEnum": "instances.models.REASON_CHOICES",
        "MessageStatusEnum": "campaigns.models.MessageStatus",
        "CampaignStatusEnum": "campaigns.models.CampaignStatus",
        "DeliveryStatusEnum": "campaigns.models.DeliveryStatus",
    },
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- The connection engine's policies (seed values as defaults) -----------

# Circuit breaker: opens after THRESHOLD failures inside a sliding WINDOW,
# goes half-open after COOLDOWN for one trial attempt.
BLAST_BREAKER_THRESHOLD = env_int("BLAST_BREAKER_THRESHOLD", 10, minimum=1)
BLAST_BREAKER_WINDOW_S = env_float("BLAST_BREAKER_WINDOW_S", 300.0, minimum=0.001)
BLAST_BREAKER_COOLDOWN_S = env_float("BLAST_BREAKER_COOLDOWN_S", 600.0, minimum=0)
# A session that drops within this long of `ready` counts as a failure.
BLAST_FLAP_WINDOW_S = env_float("BLAST_FLAP_WINDOW_S", 30.0, minimum=0)

# A gateway is down (instances.outages) when, within the window, at least
# max(MIN, SHARE x its running instances) of its instances failed with
# gateway-level reasons and none of them was answered with `hello`. While
# down, one probe at a time cluster-wide, backing off from PROBE_MIN to
# PROBE_MAX seconds; once back, its instances reconnect at CONNECT_RATE
# upgrades per second (cluster-wide).
BLAST_GATEWAY_DOWN_WINDOW_S = env_float("BLAST_GATEWAY_DOWN_WINDOW_S", 60.0, minimum=1)
BLAST_GATEWAY_DOWN_SHARE = env_float("BLAST_GATEWAY_DOWN_SHARE", 0.5, minimum=0.01)
BLAST_GATEWAY_DOWN_MIN = env_int("BLAST_GATEWAY_DOWN_MIN", 5, minimum=1)
BLAST_GATEWAY_PROBE_MIN_S = env_float("BLAST_GATEWAY_PROBE_MIN_S", 1.0, minimum=0.1)
BLAST_GATEWAY_PROBE_MAX_S = env_float("BLAST_GATEWAY_PROBE_MAX_S", 15.0, minimum=0.1)
BLAST_GATEWAY_CONNECT_RATE = env_float("BLAST_GATEWAY_CONNECT_RATE", 200.0, minimum=1)

# Retry delays by reason; growth after GROWTH_AFTER consecutive failures,
# capped at MAX_DELAY; every delay is jittered by +/- JITTER (a fraction).
BLAST_RETRY_DELAY_TIMEOUT_S = env_float("BLAST_RETRY_DELAY_TIMEOUT_S", 30.0, minimum=0)
BLAST_RETRY_DELAY_S = env_float("BLAST_RETRY_DELAY_S", 15.0, minimum=0)
BLAST_RETRY_GROWTH_AFTER = env_int("BLAST_RETRY_GROWTH_AFTER", 5, minimum=0)
BLAST_RETRY_GROWTH_FACTOR = env_float("BLAST_RETRY_GROWTH_FACTOR", 1.5, minimum=1)
BLAST_RETRY_MAX_DELAY_S = env_float("BLAST_RETRY_MAX_DELAY_S", 60.0, minimum=0)
BLAST_RETRY_JITTER = env_float("BLAST_RETRY_JITTER", 0.2, minimum=0, maximum=1)
BLAST_BAN_PAUSE_S = env_float("BLAST_BAN_PAUSE_S", 3600.0, minimum=0)

# Sessions (PROTOCOL.md): upgrade timeout, hello timeout, keepalive,
# malformed-frame budget, and how long a closing handshake may take.
BLAST_OPEN_TIMEOUT_S = env_float("BLAST_OPEN_TIMEOUT_S", 10.0, minimum=0.1)
BLAST_HELLO_TIMEOUT_S = env_float("BLAST_HELLO_TIMEOUT_S", 10.0, minimum=0.1)
BLAST_PING_INTERVAL_S = env_float("BLAST_PING_INTERVAL_S", 20.0, minimum=0.1)
BLAST_PING_TIMEOUT_S = env_float("BLAST_PING_TIMEOUT_S", 20.0, minimum=0.1)
BLAST_MALFORMED_LIMIT = env_int("BLAST_MALFORMED_LIMIT", 5, minimum=0)
BLAST_MALFORMED_WINDOW_S = env_float("BLAST_MALFORMED_WINDOW_S", 60.0, minimum=0.001)
BLAST_CLOSE_TIMEOUT_S = env_float("BLAST_CLOSE_TIMEOUT_S", 2.0, minimum=0.1)

# Ownership: Redis lease per instance, renewed every TTL/3.
BLAST_LEASE_TTL_S = env_float("BLAST_LEASE_TTL_S", 15.0, minimum=0.3)
# How many instance ids one hint names; hints are batched, never one by one.
BLAST_HINT_BATCH = env_int("BLAST_HINT_BATCH", 500, minimum=1)
# The connection worker: its channel-layer group, how long it keeps its
# database connection, how often it writes its heartbeat.
BLAST_WORKER_CHANNEL = env_str("BLAST_WORKER_CHANNEL", "blast-connections")
BLAST_WORKER_CONN_MAX_AGE_S = env_int("BLAST_WORKER_CONN_MAX_AGE_S", 300, minimum=0)
BLAST_HEARTBEAT_INTERVAL_S = env_float("BLAST_HEARTBEAT_INTERVAL_S", 5.0, minimum=0.1)
# Scale-out (instances.placement): the most sessions one worker holds, and how
# many sessions per second the cluster moves to even out its workers' shares
# (a worker joining takes its share at this pace, never in a storm).
BLAST_WORKER_CAPACITY = env_int("BLAST_WORKER_CAPACITY", 20000, minimum=1)
BLAST_REBALANCE_MOVES_PER_S = env_float("BLAST_REBALANCE_MOVES_PER_S", 100.0, minimum=0.1)
# The interval beat's recovery jobs (due retries, cooldowns, lost leases) get
# when they are created (instances.schedules; tuned later in the admin).
BLAST_RECOVERY_PERIOD_S = env_float("BLAST_RECOVERY_PERIOD_S", 5.0, minimum=0.5)

# Manual controls, whoever asks (API keys, seed endpoints, admin): at most one
# force retry and one reset breaker per instance per MANUAL interval, one
# connect and one disconnect per SESSION interval (so that connect/disconnect
# cycles cannot open a gateway session each). 0 turns a limit off.
BLAST_MANUAL_ACTION_INTERVAL_S = env_float("BLAST_MANUAL_ACTION_INTERVAL_S", 30.0, minimum=0)
BLAST_SESSION_ACTION_INTERVAL_S = env_float("BLAST_SESSION_ACTION_INTERVAL_S", 10.0, minimum=0)

# Sending policy defaults for new instances: a random delay between two
# sends and hourly/daily caps (0: no cap). Single messages go out at once by
# default; campaigns pace themselves (tens of seconds between sends, as
# common anti-ban guidance has it) and the caps bound an account's volume.
BLAST_SEND_DELAY_MIN_S = env_float("BLAST_SEND_DELAY_MIN_S", 0.0, minimum=0)
BLAST_SEND_DELAY_MAX_S = env_float("BLAST_SEND_DELAY_MAX_S", 0.0, minimum=0)
BLAST_HOURLY_CAP = env_int("BLAST_HOURLY_CAP", 200, minimum=0)
BLAST_DAILY_CAP = env_int("BLAST_DAILY_CAP", 1000, minimum=0)
# Warm-up (instances.sending): a number that pairs starts with these daily
# caps, one per day since it paired, then its own daily cap. An instance's
# `warmup` flag (on by default) or this switch turns it off.
BLAST_WARMUP_ENABLED = env_bool("BLAST_WARMUP_ENABLED", True)
BLAST_WARMUP_SCHEDULE = [int(n) for n in env_list("BLAST_WARMUP_SCHEDULE", ["20", "40", "80", "160", "320", "640"])]
# Restriction telemetry (instances.restrictions): nack errors that mean the
# network is limiting the account. Each slows the instance for SLOWDOWN_S
# (delays times SLOWDOWN_FACTOR, caps divided by it); RESTRICTION_PAUSE_AFTER
# of them within RESTRICTION_WINDOW_S pause its sending for
# RESTRICTION_PAUSE_S and raise an alert.
BLAST_RESTRICTION_ERRORS = env_list(
    "BLAST_RESTRICTION_ERRORS",
    ["rate_limited", "rate-overlimit", "whatsapp_error_429", "whatsapp_error_463", "whatsapp_error_479"],
)
# Typing before sending (an instance's `typing` policy): a presence
# composing frame, then a random pause inside this range, before each message.
BLAST_TYPING_MIN_S = env_float("BLAST_TYPING_MIN_S", 1.0, minimum=0)
BLAST_TYPING_MAX_S = env_float("BLAST_TYPING_MAX_S", 5.0, minimum=0)
BLAST_SLOWDOWN_S = env_float("BLAST_SLOWDOWN_S", 3600.0, minimum=0)
BLAST_SLOWDOWN_FACTOR = env_float("BLAST_SLOWDOWN_FACTOR", 2.0, minimum=1)
BLAST_RESTRICTION_WINDOW_S = env_float("BLAST_RESTRICTION_WINDOW_S", 3600.0, minimum=1)
BLAST_RESTRICTION_PAUSE_AFTER = env_int("BLAST_RESTRICTION_PAUSE_AFTER", 5, minimum=1)
BLAST_RESTRICTION_PAUSE_S = env_float("BLAST_RESTRICTION_PAUSE_S", 3600.0, minimum=0)
BLAST_CAMPAIGN_DELAY_MIN_S = env_float("BLAST_CAMPAIGN_DELAY_MIN_S", 20.0, minimum=0)
BLAST_CAMPAIGN_DELAY_MAX_S = env_float("BLAST_CAMPAIGN_DELAY_MAX_S", 45.0, minimum=0)
# A nack without retry_after_s is retried after this long.
BLAST_NACK_RETRY_S = env_float("BLAST_NACK_RETRY_S", 30.0, minimum=0)

# --- Monitoring (docs/OPERATIONS.md) --------------------------------------

# Health (monitoring.health): pass from this score up; a connection worker is
# live while its heartbeat is fresher than FACTOR heartbeat intervals; beat is
# stalled when no recovery job ran for BEAT_STALE_S; the Celery worker when no
# heartbeat task ran for CELERY_STALE_S.
BLAST_HEALTH_PASS_SCORE = env_int("BLAST_HEALTH_PASS_SCORE", 80, minimum=0, maximum=100)
BLAST_WORKER_STALE_FACTOR = env_float("BLAST_WORKER_STALE_FACTOR", 3.0, minimum=1.0)
BLAST_BEAT_STALE_S = env_float("BLAST_BEAT_STALE_S", 60.0, minimum=1.0)
BLAST_CELERY_STALE_S = env_float("BLAST_CELERY_STALE_S", 45.0, minimum=1.0)

# The intervals the monitoring app's beat jobs get when they are created
# (instances.schedules; tuned later in the admin).
BLAST_CELERY_HEARTBEAT_PERIOD_S = env_float("BLAST_CELERY_HEARTBEAT_PERIOD_S", 10.0, minimum=1.0)
BLAST_SNAPSHOT_PERIOD_S = env_float("BLAST_SNAPSHOT_PERIOD_S", 60.0, minimum=1.0)
BLAST_ALERT_PERIOD_S = env_float("BLAST_ALERT_PERIOD_S", 10.0, minimum=1.0)
BLAST_PRUNE_PERIOD_S = env_float("BLAST_PRUNE_PERIOD_S", 3600.0, minimum=1.0)

# Retention: snapshots in hours, connection events and alerts in days.
BLAST_SNAPSHOT_RETENTION_H = env_float("BLAST_SNAPSHOT_RETENTION_H", 168.0, minimum=1.0)
BLAST_EVENT_RETENTION_DAYS = env_float("BLAST_EVENT_RETENTION_DAYS", 30.0, minimum=0.01)
BLAST_ALERT_RETENTION_DAYS = env_float("BLAST_ALERT_RETENTION_DAYS", 90.0, minimum=0.01)

# Alerts: the score below which score_low fires; webhook delivery attempts,
# exponential backoff (BASE * 2^(attempt-1), at most MAX) and HTTP timeout.
BLAST_ALERT_SCORE_THRESHOLD = env_int("BLAST_ALERT_SCORE_THRESHOLD", 80, minimum=0, maximum=100)
BLAST_ALERT_MAX_ATTEMPTS = env_int("BLAST_ALERT_MAX_ATTEMPTS", 8, minimum=1)
BLAST_ALERT_RETRY_BASE_S = env_float("BLAST_ALERT_RETRY_BASE_S", 10.0, minimum=0.01)
BLAST_ALERT_RETRY_MAX_S = env_float("BLAST_ALERT_RETRY_MAX_S", 900.0, minimum=0.01)
BLAST_ALERT_TIMEOUT_S = env_float("BLAST_ALERT_TIMEOUT_S", 10.0, minimum=0.1)
# How long the evaluator waits for an event id it skipped (a transaction still
# open) before giving up on it.
BLAST_ALERT_EVENT_GRACE_S = env_float("BLAST_ALERT_EVENT_GRACE_S", 120.0, minimum=1.0)

# The live dashboard: how often each open page is refreshed over its
# WebSocket, how many instance rows it shows, how many hours its chart spans.
BLAST_DASHBOARD_POLL_S = env_float("BLAST_DASHBOARD_POLL_S", 2.0, minimum=0.2)
BLAST_DASHBOARD_MAX_ROWS = env_int("BLAST_DASHBOARD_MAX_ROWS", 200, minimum=1)
BLAST_DASHBOARD_CHART_HOURS = env_float("BLAST_DASHBOARD_CHART_HOURS", 6.0, minimum=0.1)

# /metrics: when set, scrapers must send "Authorization: Bearer <token>".
BLAST_METRICS_TOKEN = env_str("BLAST_METRICS_TOKEN", "")
# The messages model counted by blast_messages{status} once it exists.
BLAST_METRICS_MESSAGE_MODEL = env_str("BLAST_METRICS_MESSAGE_MODEL", "campaigns.Message")

# --- Messages and campaigns (docs/CAMPAIGNS.md) ---------------------------

# An inbound message is a reply to the last message its instance sent to the
# sender within this many hours (linked, and counted in the campaign's report).
BLAST_REPLY_WINDOW_H = env_float("BLAST_REPLY_WINDOW_H", 72.0, minimum=0)
# Number checks (POST /api/v1/instances/{id}/number-checks): the most numbers
# one request names, how long an answer is reused for the tenant, and the
# pause between two `check` frames of one instance (50 numbers each).
BLAST_NUMBER_CHECK_MAX = env_int("BLAST_NUMBER_CHECK_MAX", 1000, minimum=1)
BLAST_NUMBER_CHECK_CACHE_H = env_float("BLAST_NUMBER_CHECK_CACHE_H", 168.0, minimum=0)
BLAST_NUMBER_CHECK_PACE_S = env_float("BLAST_NUMBER_CHECK_PACE_S", 1.0, minimum=0)
# Auto-reply rules: the cool-down a new rule gets (an instance answers one
# contact automatically at most once per cool-down), and the time a regex
# pattern may take on one message before it counts as no match.
BLAST_AUTO_REPLY_COOLDOWN_S = env_int("BLAST_AUTO_REPLY_COOLDOWN_S", 3600, minimum=10)
BLAST_AUTO_REPLY_REGEX_TIMEOUT_S = env_float("BLAST_AUTO_REPLY_REGEX_TIMEOUT_S", 0.05, minimum=0.001)
# Messages per tenant per calendar month (UTC); 0: unlimited.
BLAST_TENANT_MONTHLY_QUOTA = env_int("BLAST_TENANT_MONTHLY_QUOTA", 0, minimum=0)
# Most messages one POST /api/v1/messages/batch may hold.
BLAST_MESSAGE_BATCH_MAX = env_int("BLAST_MESSAGE_BATCH_MAX", 1000, minimum=1)
# Region used to read numbers written without a country code ("": none, such
# numbers are refused). An upload may name its own (?region=BR).
BLAST_DEFAULT_REGION = env_str("BLAST_DEFAULT_REGION", "")

# CSV uploads: largest file and most data rows accepted in one upload, and the
# most contacts a list may hold.
BLAST_CSV_MAX_BYTES = env_int("BLAST_CSV_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
BLAST_CSV_MAX_ROWS = env_int("BLAST_CSV_MAX_ROWS", 100_000, minimum=1)
BLAST_CONTACT_LIST_MAX_CONTACTS = env_int("BLAST_CONTACT_LIST_MAX_CONTACTS", 1_000_000, minimum=1)
# Longest line of an upload, in bytes: a longer one refuses the file before it
# is parsed. Also the most characters of one row whose value spans lines.
BLAST_CSV_MAX_LINE_BYTES = env_int("BLAST_CSV_MAX_LINE_BYTES", 64 * 1024, minimum=1024)
# A web process imports one upload at a time: another waits this long for its
# turn, then is refused (429, Retry-After) without being read.
BLAST_CSV_IMPORT_WAIT_S = env_float("BLAST_CSV_IMPORT_WAIT_S", 10.0, minimum=0)
# The web process (blast/web.py) answers 413 to a request body above this many
# bytes before storing it. Default: the largest body an endpoint accepts, a CSV
# upload plus its multipart overhead (campaigns/parsers.py) or a JSON body.
BLAST_WEB_MAX_BODY_BYTES = env_int(
    "BLAST_WEB_MAX_BODY_BYTES", max(BLAST_CSV_MAX_BYTES + 64 * 1024, DATA_UPLOAD_MAX_MEMORY_SIZE), minimum=1024
)

# Expansion: contacts turned into messages per transaction, and chunks per
# task run before the task re-queues itself.
BLAST_CAMPAIGN_CHUNK = env_int("BLAST_CAMPAIGN_CHUNK", 500, minimum=1)
BLAST_CAMPAIGN_CHUNKS_PER_TASK = env_int("BLAST_CAMPAIGN_CHUNKS_PER_TASK", 20, minimum=1)
# The interval the campaign beat job gets when it is created
# (instances.schedules); an expansion with no progress for STALL_S is
# dispatched again.
BLAST_CAMPAIGN_PERIOD_S = env_float("BLAST_CAMPAIGN_PERIOD_S", 5.0, minimum=0.5)
BLAST_CAMPAIGN_EXPANSION_STALL_S = env_float("BLAST_CAMPAIGN_EXPANSION_STALL_S", 60.0, minimum=1)
# A running campaign pauses by itself once none of its instances has been
# connected for this long, and resumes when one connects.
BLAST_CAMPAIGN_PAUSE_GRACE_S = env_float("BLAST_CAMPAIGN_PAUSE_GRACE_S", 15.0, minimum=0)
# An instance of a campaign not connected this long (or stopped for good)
# hands its unsent share to the campaign's connected instances; what cannot
# move fails with instance_stopped at the campaign's deadline, or this many
# hours after the instance stopped (campaigns.reroute).
BLAST_CAMPAIGN_REROUTE_AFTER_S = env_float("BLAST_CAMPAIGN_REROUTE_AFTER_S", 300.0, minimum=0)
BLAST_CAMPAIGN_STRANDED_FAIL_H = env_float("BLAST_CAMPAIGN_STRANDED_FAIL_H", 24.0, minimum=0)
# Allowed hours are enforced by the beat job: messages are held this long
# before a window closes, so that a late tick never lets one out after.
BLAST_CAMPAIGN_WINDOW_GUARD_S = env_float("BLAST_CAMPAIGN_WINDOW_GUARD_S", 30.0, minimum=0)

# Inbound messages whose whole text (case, spaces and punctuation ignored) is
# one of these opt the sender out, or back in.
BLAST_OPT_OUT_KEYWORDS = env_list(
    "BLAST_OPT_OUT_KEYWORDS", ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"]
)
BLAST_OPT_IN_KEYWORDS = env_list("BLAST_OPT_IN_KEYWORDS", ["START", "UNSTOP"])

# Status webhooks: the fan-out job's interval when created (instances.schedules),
# events per POST, attempts, backoff (BASE * 2^(attempt-1), at most MAX), HTTP
# timeout, retention of finished deliveries and the interval of the job that
# prunes them when created. Private targets: BLAST_WEBHOOK_ALLOW_PRIVATE.
BLAST_WEBHOOK_PERIOD_S = env_float("BLAST_WEBHOOK_PERIOD_S", 5.0, minimum=0.5)
BLAST_WEBHOOK_BATCH = env_int("BLAST_WEBHOOK_BATCH", 100, minimum=1)
BLAST_WEBHOOK_MAX_ATTEMPTS = env_int("BLAST_WEBHOOK_MAX_ATTEMPTS", 10, minimum=1)
BLAST_WEBHOOK_RETRY_BASE_S = env_float("BLAST_WEBHOOK_RETRY_BASE_S", 10.0, minimum=0.01)
BLAST_WEBHOOK_RETRY_MAX_S = env_float("BLAST_WEBHOOK_RETRY_MAX_S", 3600.0, minimum=0.01)
BLAST_WEBHOOK_TIMEOUT_S = env_float("BLAST_WEBHOOK_TIMEOUT_S", 10.0, minimum=0.1)
BLAST_WEBHOOK_RETENTION_DAYS = env_float("BLAST_WEBHOOK_RETENTION_DAYS", 7.0, minimum=0.01)
BLAST_WEBHOOK_PRUNE_PERIOD_S = env_float("BLAST_WEBHOOK_PRUNE_PERIOD_S", 3600.0, minimum=1.0)

# --- Logging --------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "blast.logs.RedactSecretsFilter"},
        "periodic_bookkeeping": {"()": "blast.logs.PeriodicBookkeepingFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # runserver's request lines ("GET /path?access_token=... HTTP/1.1")
        # are logged here; without a handler of ours they would go to Python's
        # last-resort handler, past the redaction filter.
        "django.server": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "websockets": {"level": "WARNING"},
        # Beat's "Sending due task", the worker's "received" and "succeeded":
        # DEBUG for the beat jobs, INFO for one-off tasks (blast.logs).
        "celery.beat": {"filters": ["periodic_bookkeeping"]},
        "celery.worker.strategy": {"filters": ["periodic_bookkeeping"]},
        "celery.app.trace": {"filters": ["periodic_bookkeeping"]},
    },
}
