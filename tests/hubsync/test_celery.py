from __future__ import annotations

import time

import pytest
from django.conf import settings

from hubsync.celery import app
from hubsync.dispatch import dispatch_due, register, unregister
from hubsync.models import Workspace
from tests.hubsync.celery_worker import PROBE_PREFIX, running_worker


def test_reliability_settings():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert {q.name: q.routing_key for q in conf.task_queues} == {
        "extract": "extract",
        "deliver": "deliver",
        "alerts": "alerts",
    }
    assert app.amqp.router.route({}, "sources.extract")["queue"].name == "extract"
    assert app.amqp.router.route({}, "mappings.deliver")["queue"].name == "deliver"
    entry = conf.beat_schedule["dispatch-due-syncs"]
    assert entry["task"] == "hubsync.dispatch"
    assert entry["schedule"] == 60.0
    assert entry["options"]["expires"] < 60  # stale ticks are dropped, not piled up
    # A task still running when the visibility timeout passes would be handed to a second worker.
    assert conf.task_time_limit < conf.broker_transport_options.get("visibility_timeout", float("inf"))
    assert conf.task_soft_time_limit < conf.task_time_limit
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery finds hubsync/tasks.py
    assert "hubsync.dispatch" in app.tasks


def test_dispatch_calls_every_registered_dispatcher_and_survives_a_broken_one():
    calls = []

    def broken():
        raise RuntimeError("boom")

    def working():
        calls.append("ran")
        return 3

    register(broken)
    register(working)
    register(working)  # registering twice keeps one entry
    try:
        results = dispatch_due()
    finally:
        unregister(broken)
        unregister(working)
    assert calls == ["ran"]
    by_function = {name.rsplit(".", 1)[-1]: result for name, result in results.items()}
    assert by_function["working"] == 3
    assert by_function["broken"] == {"error": "RuntimeError"}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_real_worker_answers_ping_and_runs_dispatch(tmp_path):
    with running_worker(tmp_path) as worker:
        replies = worker.app.control.ping(destination=[worker.name], timeout=2)
        assert replies == [{worker.name: {"ok": "pong"}}]

        # The running worker really has the reliability settings and consumes both queues.
        inspect = worker.app.control.inspect(destination=[worker.name], timeout=3)
        conf = inspect.conf(with_defaults=True)[worker.name]
        assert conf["task_acks_late"] is True
        assert conf["task_reject_on_worker_lost"] is True
        assert conf["worker_prefetch_multiplier"] == 1
        queues = {q["name"] for q in inspect.active_queues()[worker.name]}
        assert queues == {"extract", "deliver", "alerts"}
        expected_transport = "redis" if settings.REDIS_URL else "filesystem"
        assert conf["broker_url"].startswith(expected_transport)

        worker.app.send_task("hubsync.dispatch")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probes = list(Workspace.objects.filter(name__startswith=PROBE_PREFIX).values_list("name", flat=True))
            if probes:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"hubsync.dispatch did not run in the worker:\n{worker.output()}")
        # Written by the worker's pool process, into the very database this test reads.
        assert probes[0] != f"{PROBE_PREFIX}{worker.proc.pid}"
        deadline = time.monotonic() + 10
        while "succeeded" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Task hubsync.dispatch[" in worker.output()
        assert "'tests.hubsync.celery_worker.probe_dispatcher': 'probed'" in worker.output()
