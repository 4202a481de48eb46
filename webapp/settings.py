"""Django settings for Weightspace.

Every deployment-specific value comes from an environment variable read through the typed
helpers in ``webapp.env``; the defaults are the embedded, single-machine shape that
``make run`` starts (SQLite file, a broker that needs no server, files under ``var/``).
``compose.yaml`` sets the same variables for production.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from webapp.env import envbool, envbytes, envint, envlist, envstr, parse_object_store
from workers.catalog.estimates import default_job_memory_limit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("WEIGHTSPACE_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DEBUG", False)
_DEV_SECRET = "dev-only-insecure-secret-key-do-not-use-in-production"
SECRET_KEY = envstr("SECRET_KEY", _DEV_SECRET if DEBUG else None)
if SECRET_KEY == _DEV_SECRET and not DEBUG:
    raise ImproperlyConfigured("The development SECRET_KEY may only be used with DEBUG=1.")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets from PyPI, never a CDN
    "django_htmx",
    "webapp.core",
    "webapp.accounts",
    "webapp.architectures",
    "webapp.checkpoints",
    "webapp.datasets",
    "webapp.jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "webapp.core.middleware.UploadSizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "webapp.core.middleware.OutageMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'weightspace.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        # A kept connection is checked before reuse, so a restarted PostgreSQL costs one
        # reconnect instead of an error on the first request after it.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded shape has a web process and a worker writing to one file: WAL and
    # immediate transactions avoid "database is locked" under that light concurrency.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files ----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
# The pages' libraries come from npm (`make setup` runs `npm ci`); only their built files
# are served, under /static/vendor/<package>/.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/elkjs", BASE_DIR / "node_modules" / "elkjs" / "lib"),
    ("vendor/uplot", BASE_DIR / "node_modules" / "uplot" / "dist"),
]
# In development, serve static files straight from the apps and static/ (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(envstr("STORAGE_DIR", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
# Uploads and artifacts: the STORAGE_DIR folder, or, with STORAGE_URL set, an S3-compatible
# bucket every web and worker host reaches (s3://ACCESS:SECRET@host:port/bucket?secure=0; see
# webapp.env.parse_object_store). Downloads stream through the web process either way.
STORAGE_URL = envstr("STORAGE_URL", "")
OBJECT_STORE = parse_object_store("STORAGE_URL", STORAGE_URL) if STORAGE_URL else None
DEFAULT_FILE_STORAGE_CONFIG: dict[str, object] = (
    OBJECT_STORE.storage_config()
    if OBJECT_STORE is not None
    else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
)
STORAGES = {
    "default": DEFAULT_FILE_STORAGE_CONFIG,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# /readyz gives each check (database, broker, storage) this long before it answers 503.
READYZ_TIMEOUT = envint("READYZ_TIMEOUT", 3, minimum=1)
# Uploads above this size are refused before their body is read.
MAX_UPLOAD_SIZE = envbytes("MAX_UPLOAD_SIZE", 2 * 2**30)
# What the compressed members of one uploaded .pt2/.npz archive may inflate to, in all; checked
# against the declared sizes before anything is inflated (stored members cost nothing extra).
UPLOAD_MAX_INFLATED = envbytes("UPLOAD_MAX_INFLATED", 512 * 2**20)
# torchvision data sets by name (mnist, kmnist, cifar10, cifar100, svhn): a worker downloads
# one on first use into DATASET_CACHE_DIR and reads it from there afterwards. On by default, as
# a deployment with internet needs nothing more; a worker that cannot reach the internet fails
# such a job in seconds, saying to upload the set as an image-folder zip instead. Where the
# workers are known to be offline, set DATASET_DOWNLOADS=off: the API and the forms then refuse
# those sets before a job is queued.
DATASET_DOWNLOADS = envbool("DATASET_DOWNLOADS", True)
DATASET_CACHE_DIR = Path(envstr("DATASET_CACHE_DIR", str(VAR_DIR / "datasets")))
# Anything bigger than 2.5 MB goes to a temporary file, never into memory whole.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_TEMP_DIR = None

# Python model sources run user code (in a sandboxed subprocess on the worker); off by default.
ALLOW_PYTHON_MODELS = envbool("ALLOW_PYTHON_MODELS", False)
PYTHON_MODEL_TIME_LIMIT = envint("PYTHON_MODEL_TIME_LIMIT", 60, minimum=1)
PYTHON_MODEL_MEMORY_MB = envint("PYTHON_MODEL_MEMORY_MB", 4096, minimum=256)

# Converted GHN files (``{"state_dict", "config"}``, see workers/ghn/convert.py) the predict job
# offers, by file name; the web process lists the folder, workers read it.
GHN_CHECKPOINT_DIR = Path(envstr("GHN_CHECKPOINT_DIR", str(VAR_DIR / "ghn")))
# The project's own GHN, meta-trained on Fashion-MNIST and committed with the code; offered as
# "ours" (set GHN_OURS_PATH to an empty string to hide it).
GHN_OURS_PATH = envstr(
    "GHN_OURS_PATH", str(BASE_DIR / "workers" / "ghn" / "weights" / "ghn_ours.pt")
)

# Predict jobs refuse models above this many parameters (graph and prediction take minutes).
GHN_MAX_PARAMS = envint("GHN_MAX_PARAMS", 300_000_000, minimum=1)

# Zoo models above this many parameters (counted from their arguments) are refused when they
# are added; 0 accepts any size.
MAX_MODEL_PARAMS = envint("MAX_MODEL_PARAMS", 2_000_000_000, minimum=0)
# Memory a train or predict job may need (its model's weights, gradients, optimizer state and
# snapshots, estimated before the model is built); a job above it fails with a sentence instead
# of being killed by the kernel. Default: 3/4 of this machine's memory (each worker reads its
# own /proc/meminfo); "0" turns the check off.
JOB_MEMORY_LIMIT = (
    0
    if envstr("JOB_MEMORY_LIMIT", "").strip() == "0"
    else envbytes("JOB_MEMORY_LIMIT", default_job_memory_limit())
)

# --- REST API -------------------------------------------------------------------------------
API_PAGE_SIZE = envint("API_PAGE_SIZE", 25, minimum=1)
API_MAX_PAGE_SIZE = envint("API_MAX_PAGE_SIZE", 200, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "webapp.core.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "webapp.core.schema.AutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Weightspace API",
    "DESCRIPTION": "Neural networks as graphs: upload models and checkpoints, run jobs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Names for enums whose field names collide (otherwise "Kind579Enum", "Format709Enum").
    "ENUM_NAME_OVERRIDES": {
        "JobKindEnum": "webapp.core.schema.job_kind_choices",
        "CheckpointFormatEnum": "webapp.checkpoints.models.Checkpoint.Format",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery ---------------------------------------------------------------------------------
# Default broker needs no server: kombu's filesystem transport in var/broker.
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.5,
    }
elif CELERY_BROKER_URL.startswith("redis"):
    # A long job must not be re-delivered while it still runs (acks_late).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 24 * 3600}
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_IGNORE_RESULT = True  # the Job row is the source of truth, not a result backend
CELERY_TASK_ACKS_LATE = True
# Sending a job's id happens while a person waits for the page: retry briefly, then fail the
# job with a reason (Job.enqueue) rather than hang.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2, "interval_start": 0.2, "interval_step": 0.4, "interval_max": 1,
}  # fmt: skip
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
JOB_SOFT_TIME_LIMIT = envint("JOB_SOFT_TIME_LIMIT", 6 * 3600, minimum=10)
JOB_TIME_LIMIT = envint("JOB_TIME_LIMIT", JOB_SOFT_TIME_LIMIT + 300, minimum=11)
if JOB_TIME_LIMIT <= JOB_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("JOB_TIME_LIMIT must be larger than JOB_SOFT_TIME_LIMIT.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = envbool("SECURE_COOKIES", True)
