"""CloudSeam settings: one file, every value from the environment with a single-machine default.

See DESIGN §6.7 and the README's "Production" section. The defaults need nothing but `make setup`:
SQLite in the data folder and an embedded Redis that `serve` starts.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import dj_database_url

from cloudseam_site import outbound
from cloudseam_site.env import ConfigError, env_bool, env_float, env_int, env_list, env_networks, env_str
from cloudseam_site.private_files import make_private

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("CLOUDSEAM_DATA_DIR", str(BASE_DIR / "var"))).resolve()
make_private(DATA_DIR)  # 0700, files 0600: it holds the database (sessions) and the secret key
MACHINES_DIR = Path(env_str("CLOUDSEAM_MACHINES_DIR", str(BASE_DIR / "machines"))).resolve()


def _secret_key() -> str:
    """A key generated once and kept in the data folder, so sessions survive restarts."""
    configured = env_str("DJANGO_SECRET_KEY")
    if configured:
        return configured
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "cloudseam_site.accounts",
    "machines_app",
    "stacks",
]

MIDDLEWARE = [
    "cloudseam_site.overload.OverloadMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "cloudseam_site.security.ContentSecurityPolicyMiddleware",
    "cloudseam_site.security.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cloudseam_site.urls"
ASGI_APPLICATION = "cloudseam_site.asgi.application"

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
                "cloudseam_site.accounts.roles.role_context",
            ],
        },
    },
]


def _databases() -> dict:
    """SQLite (WAL, immediate transactions, busy timeout) by default; DATABASE_URL otherwise.

    CLOUDSEAM_TEST_DATABASE=postgres points the test run at the local PostgreSQL server, so
    `make test` can run the service tests on both databases.
    """
    url = env_str("DATABASE_URL")
    if env_str("CLOUDSEAM_TEST_DATABASE") == "postgres" and not url:
        url = env_str("CLOUDSEAM_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/cloudseam")
    if url:
        try:
            db = dj_database_url.parse(url)
        except ValueError as exc:
            raise ConfigError(f"DATABASE_URL is not a database URL CloudSeam understands: {exc}") from None
        if db["ENGINE"] == "django.db.backends.postgresql":
            _pool(db)
    else:
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "cloudseam.sqlite3")}
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            }
        )
        test_name = env_str("CLOUDSEAM_TEST_SQLITE")
        if test_name:
            db["TEST"] = {"NAME": test_name}
    return {"default": db}


def _pool(db: dict) -> None:
    """A bounded connection pool per process (psycopg_pool), instead of one connection per thread.

    Daphne runs every request in its own thread; persistent per-thread connections piled up until
    PostgreSQL refused clients. With the pool, a request borrows a connection and gives it back when
    it ends; beyond CLOUDSEAM_DB_POOL_SIZE requests wait up to CLOUDSEAM_DB_POOL_TIMEOUT seconds and
    are then answered 503 (cloudseam_site.overload). README "Connections" adds up the sizes.
    """
    size = env_int("CLOUDSEAM_DB_POOL_SIZE", 8)
    timeout = env_float("CLOUDSEAM_DB_POOL_TIMEOUT", 5.0)
    if size < 1 or timeout <= 0:
        raise ConfigError("CLOUDSEAM_DB_POOL_SIZE must be 1 or more and CLOUDSEAM_DB_POOL_TIMEOUT above 0")
    db["CONN_MAX_AGE"] = 0  # Django requires it with a pool: a connection goes back at the end of a request
    db.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": size, "timeout": timeout}


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: RQ queues and the channels layer. Without REDIS_URL, `serve` starts an embedded Redis on a
# socket in the data folder, and every other command (send_event, rqworker…) finds it there.
EMBEDDED_REDIS_SOCKET = DATA_DIR / "redis.sock"
if len(str(EMBEDDED_REDIS_SOCKET)) > 100:  # Unix socket paths are limited to ~107 bytes
    EMBEDDED_REDIS_SOCKET = Path("/tmp") / f"cloudseam-{hashlib.sha256(bytes(DATA_DIR)).hexdigest()[:16]}.sock"
REDIS_URL = env_str("REDIS_URL") or f"unix://{EMBEDDED_REDIS_SOCKET}"
EMBEDDED_REDIS = not env_str("REDIS_URL")

RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": env_int("CLOUDSEAM_JOB_TIMEOUT", 3600)},
}
RQ_SHOW_ADMIN_LINK = True
# Jobs are already enqueued from transaction.on_commit (stacks.runtime.queueing); django-rq must not defer again.
RQ = {"WORKER_CLASS": "stacks.runtime.worker.CloudSeamWorker", "COMMIT_MODE": "auto"}

CHANNEL_LAYERS = {
    "default": {
        # channels_redis with a bounded pool that waits for a free connection (stacks/live/layer.py).
        "BACKEND": "stacks.live.layer.BoundedRedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times out socket reads after 5 s by default, the same as channels_redis's
            # blocking receive: idle WebSockets were dropped. Reads may block up to 5 s; allow 30.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
            # The default of 100 silently drops updates for a busy dashboard; see DESIGN §8.
            "capacity": 2000,
            "expiry": 60,
            "max_connections": env_int("CLOUDSEAM_CHANNEL_MAX_CONNECTIONS", 50),
            "pool_timeout": 20,
            # A member a crashed web process never removed leaves after this long; live ones rejoin
            # every GROUP_REJOIN seconds (stacks/live/consumers.py), so they never expire.
            "group_expiry": 6 * 3600,
            "prefix": env_str("CLOUDSEAM_CHANNEL_PREFIX", "cloudseam"),
        },
    },
}

# Login throttling counts failures in the cache. One `serve` process is fine with the default
# in-memory cache; several web processes should share one: CLOUDSEAM_CACHE_URL=redis://….
CACHE_URL = env_str("CLOUDSEAM_CACHE_URL")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing root; files come from the finders
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Security defaults; HTTPS-only flags switch on when CloudSeam is told it is served over HTTPS.
HTTPS = env_bool("CLOUDSEAM_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
# Only behind a reverse proxy that overwrites X-Forwarded-For may `serve` take the client address
# from it; otherwise any client could pick its own address and escape the login throttle.
TRUST_PROXY = env_bool("CLOUDSEAM_TRUST_PROXY", False)
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
API_MAX_BODY = 256 * 1024

# Executors.
CLOUDSEAM_PYTHON_PREFIXES = tuple(env_list("CLOUDSEAM_PYTHON_PREFIXES", ["cloudseam_tasks"]))
CLOUDSEAM_TASK_HEARTBEAT = env_int("CLOUDSEAM_TASK_HEARTBEAT", 5)  # seconds between heartbeats
CLOUDSEAM_TASK_LOST_AFTER = env_int("CLOUDSEAM_TASK_LOST_AFTER", 30)  # no heartbeat for this long = dead
# Timeouts for tasks whose machine gives none (seconds; 0 = no limit): nothing may hang for ever unseen.
CLOUDSEAM_DEFAULT_TIMEOUT_SHELL = env_int("CLOUDSEAM_DEFAULT_TIMEOUT_SHELL", 3600)
CLOUDSEAM_DEFAULT_TIMEOUT_PYTHON = env_int("CLOUDSEAM_DEFAULT_TIMEOUT_PYTHON", 3600)
CLOUDSEAM_DEFAULT_TIMEOUT_TERRAFORM = env_int("CLOUDSEAM_DEFAULT_TIMEOUT_TERRAFORM", 7200)
CLOUDSEAM_DEFAULT_TIMEOUT_HTTP = env_int("CLOUDSEAM_DEFAULT_TIMEOUT_HTTP", 300)
# A task waiting for a completion from outside (external approvals, http callbacks) without a
# `timeout` of its own is shown as overdue after this long (seconds); with a `timeout`, it fails then.
CLOUDSEAM_EXTERNAL_DEADLINE = env_int("CLOUDSEAM_EXTERNAL_DEADLINE", 7 * 24 * 3600)

# Outgoing HTTP (the http executor, webhook notifications): internal addresses are refused unless
# listed here (addresses, CIDR networks or host names); see cloudseam_site/outbound.py.
CLOUDSEAM_OUTBOUND_ALLOW = tuple(env_list("CLOUDSEAM_OUTBOUND_ALLOW", []))
try:
    outbound.Policy.parse(CLOUDSEAM_OUTBOUND_ALLOW)
except ValueError as exc:
    raise ConfigError(f"CLOUDSEAM_OUTBOUND_ALLOW: {exc}") from None
# Notifications: absolute links to stack pages, and the pauses (seconds) between delivery attempts.
CLOUDSEAM_PUBLIC_URL = env_str("CLOUDSEAM_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
try:
    CLOUDSEAM_NOTIFY_RETRY_INTERVALS = tuple(int(s) for s in env_list("CLOUDSEAM_NOTIFY_RETRY_INTERVALS",
                                                                      ["10", "60", "300"]))
except ValueError:
    raise ConfigError("CLOUDSEAM_NOTIFY_RETRY_INTERVALS must be whole seconds, e.g. 10,60,300") from None
CLOUDSEAM_NOTIFY_TIMEOUT = env_int("CLOUDSEAM_NOTIFY_TIMEOUT", 10)

# /metrics answers these addresses without a token (Prometheus on the same host by default).
CLOUDSEAM_METRICS_ALLOW = env_networks("CLOUDSEAM_METRICS_ALLOW", "127.0.0.1,::1")

# Task attempts (issue #8): output kept per attempt (its last part), and how long finished ones stay.
CLOUDSEAM_ATTEMPT_OUTPUT_MAX_BYTES = env_int("CLOUDSEAM_ATTEMPT_OUTPUT_MAX_BYTES", 1024 * 1024)
CLOUDSEAM_ATTEMPT_RETENTION_DAYS = env_int("CLOUDSEAM_ATTEMPT_RETENTION_DAYS", 90)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"one_line_client_errors": {"()": "cloudseam_site.log_filters.OneLineClientErrors"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["one_line_client_errors"]}},  # a 403 is one line, not a traceback
    "root": {"handlers": ["console"], "level": env_str("CLOUDSEAM_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}, "rq.worker": {"level": "WARNING"}},
}
