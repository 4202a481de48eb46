"""compose.yaml (production shape) lines up with the settings; Docker does not run here."""

from __future__ import annotations

import re

import yaml

from tests.paths import ROOT

SETTINGS_SOURCE = (ROOT / "webapp" / "settings.py").read_text()
ENV_READ = r'env(?:str|bool|int|list|bytes)\(\s*"([A-Z_]+)"'
READ_BY_SETTINGS = set(re.findall(ENV_READ, SETTINGS_SOURCE))
# Variables the processes read that are not Django settings.
RUNTIME_VARIABLES = {"CUDA_VISIBLE_DEVICES", "NINO_CHECKPOINT_DIR"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_has_the_production_services():
    services = compose()["services"]
    assert {"postgres", "redis", "web", "worker-gpu", "worker-cpu"} <= services.keys()
    assert "gunicorn" in services["web"]["command"]


def test_every_variable_compose_sets_is_one_the_settings_read():
    for name, service in compose()["services"].items():
        if name in {"postgres", "redis"}:
            continue
        unknown = set(service["environment"]) - READ_BY_SETTINGS - RUNTIME_VARIABLES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_the_services_point_at_the_compose_database_and_broker():
    env = compose()["services"]["web"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://")
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379")
    assert env["DEBUG"] == "0"


def test_the_gpu_worker_runs_one_process_on_the_gpu_queue_with_a_device_reservation():
    worker = compose()["services"]["worker-gpu"]
    command = worker["command"]
    assert command[command.index("-Q") + 1] == "gpu"
    assert command[command.index("-c") + 1] == "1"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_the_cpu_worker_serves_the_cpu_queue_without_a_gpu():
    worker = compose()["services"]["worker-cpu"]
    command = worker["command"]
    assert command[command.index("-Q") + 1] == "cpu"
    assert worker["environment"]["CUDA_VISIBLE_DEVICES"] == ""


def test_the_queues_in_compose_are_the_queues_jobs_are_sent_to():
    from webapp.jobs.kinds import KINDS

    served = set()
    for service in compose()["services"].values():
        command = service.get("command") or []
        if "worker" in command:
            served |= set(command[command.index("-Q") + 1].split(","))
    assert {kind.queue for kind in KINDS.values()} <= served


def test_the_dockerfile_installs_the_project_and_serves_with_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in dockerfile and "gunicorn" in dockerfile


def test_the_runtime_variables_compose_sets_are_read_by_the_workers():
    worker_code = "\n".join(p.read_text() for p in (ROOT / "workers").rglob("*.py"))
    for name in RUNTIME_VARIABLES - {"CUDA_VISIBLE_DEVICES"}:  # read by CUDA itself
        assert name in worker_code, name
