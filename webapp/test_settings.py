"""The one test override: fast hashing, a separate var/ folder, a file-backed SQLite test DB.

The end-to-end tests start a real Celery worker in another process with these settings, so
everything both processes share (database, storage, broker folder) lives on disk or in the
configured services, never in memory.
"""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault(
    "WEIGHTSPACE_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test")
)

from webapp.settings import *  # noqa: E402,F403
from webapp.settings import DATABASES, VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Short limits so the time-limit paths can be exercised quickly.
PYTHON_MODEL_TIME_LIMIT = 20
