"""Settings are read once per process, so each configuration is loaded in a subprocess with its own env."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
# Everything settings.py reads; stripped so the developer's or CI's environment cannot leak in.
SETTINGS_ENV = {
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "HUBSYNC_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "DEBUG", "SANDBOX",
    "HUBSYNC_TESTING", "HUBSYNC_VAR_DIR", "HUBSYNC_SQLITE_PATH", "CSRF_TRUSTED_ORIGINS", "DJANGO_SETTINGS_MODULE",
    "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "HUBSPOT_API_BASE", "HUBSPOT_AUTHORIZE_URL", "HUBSYNC_CACHE",
}  # fmt: skip

DUMP = """
import json, django
from django.conf import settings
django.setup()
from django.db import connection
db = settings.DATABASES["default"]
out = {
    "DEBUG": settings.DEBUG, "SANDBOX": settings.SANDBOX, "ENGINE": db["ENGINE"], "NAME": str(db["NAME"]),
    "broker": settings.CELERY_BROKER_URL, "transport": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "cache": settings.CACHES["default"]["BACKEND"], "keys": settings.HUBSYNC_ENCRYPTION_KEYS,
    "secret": settings.SECRET_KEY,
}
if db["ENGINE"].endswith("sqlite3"):
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        out["journal_mode"] = cursor.fetchone()[0]
print(json.dumps(out))
"""


def run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    # Set by the browser tests' conftest for Playwright's event loop; a deployment never has it.
    base.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    base["HUBSYNC_VAR_DIR"] = str(tmp_path / "var")
    base.update(env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120)


def load(env: dict[str, str], tmp_path: Path) -> dict:
    proc = run(["-c", DUMP], {"DJANGO_SETTINGS_MODULE": "hubsync.settings", **env}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def production_env() -> dict[str, str]:
    return {
        "DEBUG": "false",
        # check --deploy wants 50+ characters with 5+ distinct ones, not prefixed "django-insecure-".
        "SECRET_KEY": secrets.token_urlsafe(64),
        "HUBSYNC_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
        "ALLOWED_HOSTS": "hubsync.example.com",
    }


def test_no_environment_runs_embedded_default(tmp_path):
    first = load({}, tmp_path)
    var = tmp_path / "var"
    assert first["DEBUG"] is True and first["SANDBOX"] is True
    assert first["ENGINE"] == "django.db.backends.sqlite3"
    assert first["NAME"] == str(var / "hubsync.sqlite3")
    assert first["journal_mode"] == "wal"
    assert first["broker"].startswith("filesystem://")
    for folder in ("data_folder_in", "data_folder_out", "control_folder"):
        assert Path(first["transport"][folder]).is_relative_to(var)
        assert Path(first["transport"][folder]).is_dir()
    # The generated secrets are kept in var/ (owner-only) and reused by the next process, so data encrypted
    # by one `make run` stays readable by the next, and web and worker agree.
    key_file = var / "encryption_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first["keys"] == [key_file.read_text().strip()]
    Fernet(first["keys"][0].encode())
    second = load({}, tmp_path)
    assert second["keys"] == first["keys"]
    assert second["secret"] == first["secret"]


def test_database_and_redis_urls_switch_to_postgresql_and_redis(tmp_path):
    got = load(
        {"DATABASE_URL": "postgres://u:p@db.internal:5432/hubsync", "REDIS_URL": "redis://cache.internal:6379/3"},
        tmp_path,
    )
    assert got["ENGINE"] == "django.db.backends.postgresql"
    assert got["NAME"] == "hubsync"
    assert got["broker"] == "redis://cache.internal:6379/3"
    assert got["cache"] == "django.core.cache.backends.redis.RedisCache"
    # Tasks are acked late, so a task running longer than the visibility timeout would run twice.
    assert got["transport"]["visibility_timeout"] > 3600


@pytest.mark.parametrize("missing", ["SECRET_KEY", "HUBSYNC_ENCRYPTION_KEYS", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_each_secret(tmp_path, missing):
    env = production_env()
    del env[missing]
    proc = run(["manage.py", "check"], env, tmp_path)
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr
    assert f"DEBUG is off, so these must be set: {missing}" in proc.stderr


def test_production_refuses_a_malformed_encryption_key(tmp_path):
    env = production_env()
    env["HUBSYNC_ENCRYPTION_KEYS"] = "not-a-fernet-key"
    proc = run(["manage.py", "check"], env, tmp_path)
    assert proc.returncode != 0
    assert "HUBSYNC_ENCRYPTION_KEYS entry 1 is not a valid Fernet key" in proc.stderr
    assert "not-a-fernet-key" not in proc.stderr.split("ImproperlyConfigured")[-1]


def test_check_deploy_reports_nothing_in_production(tmp_path):
    env = production_env()
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    env["REDIS_URL"] = "redis://127.0.0.1:6379/15"  # production has a shared cache (the check does not connect)
    proc = run(["manage.py", "check", "--deploy", "--fail-level", "DEBUG"], env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues (0 silenced)." in proc.stdout
    assert "WARNING" not in proc.stdout + proc.stderr


def _check_deploy(tmp_path, **extra: str) -> subprocess.CompletedProcess:
    env = {**production_env(), **extra}
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    return run(["manage.py", "check", "--deploy"], env, tmp_path)


def test_check_deploy_fails_without_a_shared_cache(tmp_path):
    """Without REDIS_URL the cache was per gunicorn worker: allauth's lock-out allowed 15 failures instead of 5."""
    proc = _check_deploy(tmp_path)
    assert proc.returncode != 0
    assert "hubsync.E001" in proc.stderr and "per process" in proc.stderr
    assert "hubsync.E001" not in _check_deploy(tmp_path, REDIS_URL="redis://127.0.0.1:6379/15").stderr
    database = _check_deploy(tmp_path, HUBSYNC_CACHE="database")
    assert "hubsync.E001" not in database.stdout + database.stderr
    assert load({**production_env(), "HUBSYNC_CACHE": "database"}, tmp_path)["cache"].endswith("DatabaseCache")


def test_check_deploy_fails_with_the_sandbox_on(tmp_path):
    proc = _check_deploy(tmp_path, SANDBOX="true", REDIS_URL="redis://127.0.0.1:6379/15")
    assert proc.returncode != 0
    assert "hubsync.E002" in proc.stderr and "SANDBOX is on while DEBUG is off" in proc.stderr
    # With DEBUG on (development) the sandbox is the point: no complaint.
    dev = run(["manage.py", "check", "--deploy"], {"DEBUG": "true", "SANDBOX": "true"}, tmp_path)
    assert "hubsync.E002" not in dev.stdout + dev.stderr


SANDBOX_PROBE = """
import django
django.setup()
from django.conf import settings
from django.test import Client
from django.urls import get_resolver
prefixes = [str(p.pattern) for p in get_resolver().url_patterns]
status = Client(HTTP_HOST="hubsync.example.com").get("/sandbox/hubspot/oauth/authorize", secure=True).status_code
print(settings.SANDBOX, "sandbox/" in prefixes, status)
"""


@pytest.mark.parametrize(("sandbox", "expected"), [(None, "False False 404"), ("true", "True True")])
def test_sandbox_is_off_in_production_unless_asked_for(tmp_path, sandbox, expected):
    env = {**production_env(), "DJANGO_SETTINGS_MODULE": "hubsync.settings", "HUBSYNC_TESTING": "1"}
    if sandbox:
        env["SANDBOX"] = sandbox
    proc = run(["-c", SANDBOX_PROBE], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith(expected)


ENV_READ = re.compile(
    r"""(?:os\.environ\.get\(|os\.environ\[|os\.getenv\(|env_bool\(|env_list\()\s*["']([A-Z][A-Z0-9_]+)["']"""
)
# Read indirectly: by a constant (bootstrap), by the Procfile / compose / gunicorn.
ALSO_READ = {"HUBSYNC_BOOTSTRAP_PASSWORD", "WORKER_CONCURRENCY", "WEB_CONCURRENCY", "POSTGRES_PASSWORD"}


def variables_read_by_the_code() -> set[str]:
    names = set()
    for app in ("hubsync", "sources", "models_app", "mappings", "monitoring", "sandbox"):
        for path in (ROOT / app).rglob("*.py"):
            names |= set(ENV_READ.findall(path.read_text()))
    names.discard("DJANGO_SETTINGS_MODULE")
    return names | ALSO_READ


def test_every_environment_variable_is_documented():
    names = variables_read_by_the_code()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "HUBSYNC_ENCRYPTION_KEYS", "HUBSPOT_AUTHORIZE_URL"} <= names
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    undocumented = sorted(n for n in names if not re.search(rf"^(# )?{n}=", example, re.MULTILINE))
    assert not undocumented, f"add these to .env.example (with a comment): {undocumented}"
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"add these to the README's configuration table: {missing}"


def test_processes_starting_together_agree_on_the_generated_key(tmp_path):
    """web, worker and beat start at once on a fresh clone: they must not each generate their own key."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env.update(HUBSYNC_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="hubsync.settings")
    code = "from django.conf import settings; print(settings.HUBSYNC_ENCRYPTION_KEYS[0])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    keys = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert len(keys) == 1
    assert keys == {(tmp_path / "var" / "encryption_key").read_text().strip()}
    assert not list((tmp_path / "var").glob(".*.tmp"))


def test_static_files_are_served_in_tests_without_collectstatic():
    import warnings

    from django.test import Client
    from whitenoise.middleware import WhiteNoiseMiddleware

    # No "No directory at: staticfiles/" warning: development and tests read static/ directly.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WhiteNoiseMiddleware(get_response=lambda request: None)
    response = Client().get("/static/css/app.css")
    assert response.status_code == 200
