"""Services without a cluster: the health and restart rules, validation, roles and their scripts, the form's
service field, ports, events and the shipped templates."""

from __future__ import annotations

import dataclasses
import subprocess
from argparse import Namespace

import pytest

from ugro_tui.core.alerts.rules import job_events
from ugro_tui.core.doctor.service_checks import binds_everywhere
from ugro_tui.core.jobs import templates
from ugro_tui.core.jobs.form import FormValues, check, parse_service_words, preview, service_words
from ugro_tui.core.jobs.model import BadSpec, Job, JobSpec, JobState, spec_type_problem, transition
from ugro_tui.core.jobs.planner import plan
from ugro_tui.core.services import roles
from ugro_tui.core.services.follow import held_ports, port_problem
from ugro_tui.core.services.status import (
    ServiceStatus,
    after_exit,
    after_probe,
    backoff,
    restart_or_give_up,
)

from ..conftest import cluster_from

CLUSTER = cluster_from("""
[cluster]
service_ports = [8000, 8099]
[[nodes]]
name = "gpu-master"
host = "127.0.0.2"
python = "~/venv/bin/python -X utf8"
[[nodes]]
name = "gpu1"
host = "127.0.0.3"
[[nodes]]
name = "gpu2"
host = "127.0.0.4"
""")
SPEC = JobSpec("api", ("srv", "--port", "{port}"), kind="service", health="/health", health_initial_delay=60,
               health_failures=3, max_restarts=2)


def probe(status, spec, t, ok, err="refused", started=0.0):
    return after_probe(status, spec, started, t, ok, 1.0 if ok else None, "" if ok else err)


def test_starting_failures_do_not_count_and_the_first_healthy_probe_makes_it_ready() -> None:
    v = probe(ServiceStatus(), SPEC, 10, False, "HTTP 503")
    assert (v.action, v.status.health, v.status.failures) == ("keep", "starting", 0)
    v = probe(v.status, SPEC, 20, True)
    assert (v.action, v.status.health, v.status.ready_at, v.status.since) == ("keep", "ready", 20, 20)
    assert [p[1] for p in v.status.probes] == [False, True]


def test_never_healthy_within_the_initial_delay_fails_with_the_last_probe_error() -> None:
    v = probe(ServiceStatus(), SPEC, 61, False, "GET /health: HTTP 404")
    assert v.action == "fail" and v.why == "never became healthy within 60s (last probe: GET /health: HTTP 404)"


def test_failures_in_a_row_make_it_unhealthy_then_restart_and_never_keeps_it_up_to_come_back() -> None:
    ready = probe(probe(ServiceStatus(), SPEC, 1, True).status, SPEC, 2, False).status
    assert (ready.health, ready.failures) == ("ready", 1)
    two = probe(ready, SPEC, 3, False).status
    v = probe(two, SPEC, 4, False, "no answer within 5s")
    assert (v.action, v.status.health, v.status.since) == ("restart", "unhealthy", 4)
    assert "3 failed probes in a row (last: no answer within 5s)" in v.why
    never = dataclasses.replace(SPEC, restart="never")
    v = probe(two, never, 4, False)
    assert (v.action, v.status.health) == ("keep", "unhealthy")
    back = probe(v.status, never, 5, True)
    assert (back.status.health, back.status.failures, back.status.since) == ("ready", 0, 5)


@pytest.mark.parametrize("policy, ok, action", [
    ("on-failure", False, "restart"), ("on-failure", True, "succeed"), ("always", True, "restart"),
    ("never", False, "fail"), ("never", True, "succeed")])
def test_an_exit_follows_the_restart_policy(policy: str, ok: bool, action: str) -> None:
    v = after_exit(ServiceStatus(), dataclasses.replace(SPEC, restart=policy), "gpu1 exited 137", ok)
    assert v.action == action
    if action == "fail":
        assert v.why == "gpu1 exited 137 (restart policy never)"


def test_restarts_back_off_and_give_up_after_max_restarts() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4, 8, 20)] == [1, 2, 4, 8, 60, 60]
    v = restart_or_give_up(ServiceStatus(health="ready", restarts=1, ready_at=5), SPEC, "gpu1 exited 1", 100)
    assert (v.action, v.status.health, v.status.restarts, v.status.next_start, v.status.ready_at) == \
        ("restart", "restarting", 2, 102, None)
    v = restart_or_give_up(v.status, SPEC, "gpu1 exited 1", 200)
    assert v.action == "fail" and v.why == "gave up after 2 restart(s): gpu1 exited 1"


@pytest.mark.parametrize("change, said", [
    ({"port": 0}, "port: expected a port number 1-65535, got 0"),
    ({"port": 65536}, "port: expected a port number 1-65535"),
    ({"port": True}, "port: expected a port number"),
    ({"health": "health"}, "health: expected a URL path that starts with /"),
    ({"health": "/a b"}, "health: expected a URL path"),
    ({"health_initial_delay": -1}, "health_initial_delay: expected seconds (0 or more), got -1"),
    ({"health_period": 0}, "health_period: expected more than 0 seconds"),
    ({"health_failures": 0}, "health_failures: expected a whole number of 1 or more"),
    ({"restart": "sometimes"}, "restart: expected never, on-failure, always, got 'sometimes'"),
    ({"max_restarts": -1}, "max_restarts: expected a whole number of 0 or more"),
    ({"worker_command": ("rpc-server",)}, "worker_command: workers run on the other nodes"),
    ({"kind": "torchrun"}, "health: only a service has one (--kind service)"),
])
def test_bad_service_settings_are_named(change: dict, said: str) -> None:
    problem = spec_type_problem(dataclasses.replace(SPEC, **change))
    assert problem is not None and said in problem, problem


def test_a_stored_service_with_wrong_types_is_refused_and_a_good_one_round_trips() -> None:
    doc = Job(1, SPEC).to_json()["spec"]
    with pytest.raises(BadSpec, match="restart"):
        JobSpec.from_json(doc | {"restart": 3})
    job = Job(7, SPEC, state=JobState.RUNNING, placement=(("gpu1", (0,)),),
              service=ServiceStatus("ready", 8001, "gpu1:8001", (("gpu2", 8002),), restarts=2,
                                    probes=((1.0, True, 1.5, ""),), since=1.0, ready_at=1.0, avoid=("gpu2",)))
    again = Job.from_json(job.to_json())
    assert again == job
    assert (job.to_json()["endpoint"], job.to_json()["restarts"], job.to_json()["health"]) == ("gpu1:8001", 2, "ready")


def test_fill_only_touches_the_known_fields() -> None:
    values = {k: k.upper() for k in roles.FIELDS}
    assert roles.fill('{"max_tokens": {port}} {lr} {workers}', values) == '{"max_tokens": PORT} {lr} WORKERS'


def three_roles() -> Job:
    spec = dataclasses.replace(SPEC, command=("{python}", "head.py", "--rpc", "{workers}", "--port", "{port}",
                                              "$(touch pwned){head}"), nnodes=3,
                               worker_command=("rpc-server", "--host", "{host}", "--port", "{port}", "{node_rank}"))
    return Job(4, spec, attempt=1, placement=(("gpu-master", (0,)), ("gpu1", (0,)), ("gpu2", (0,))),
               service=ServiceStatus(port=8000, endpoint="gpu-master:8000", workers=(("gpu1", 8001), ("gpu2", 8002))))


def test_the_head_gets_the_workers_addresses_and_every_value_stays_one_quoted_word() -> None:
    head, w1, w2 = plan(three_roles(), CLUSTER, 29500)
    command = head.script.splitlines()[5]
    assert command == ('"$HOME"/venv/bin/python -X utf8 head.py --rpc 127.0.0.3:8001,127.0.0.4:8002 --port 8000 '
                       "'$(touch pwned)127.0.0.2:8000'")
    assert w1.script.splitlines()[5] == "rpc-server --host 127.0.0.3 --port 8001 1"
    assert w2.script.splitlines()[5] == "rpc-server --host 127.0.0.4 --port 8002 2"
    assert "export UGRO_PORT=8001; export UGRO_HEAD=127.0.0.2:8000; " in w1.script
    assert "(head)" in head.script.splitlines()[1] and "(worker)" in w2.script.splitlines()[1]
    for p in (head, w1, w2):
        assert subprocess.run(["sh", "-n"], input=p.script, text=True).returncode == 0


def test_the_form_reads_and_writes_the_service_field() -> None:
    words = "port=8100 health=/health restart=always max_restarts=2 worker_command='rpc-server --port {port}'"
    parsed = parse_service_words(words)
    assert parsed == {"port": 8100, "health": "/health", "restart": "always", "max_restarts": 2,
                      "worker_command": ("rpc-server", "--port", "{port}")}
    values = FormValues(name="rpc", kind="service", script="llama-server", args="--rpc {workers}", nnodes="2",
                        service=words)
    result = check(values, CLUSTER)
    assert result.spec is not None and result.spec.port == 8100, result.errors
    assert parse_service_words(service_words(result.spec)) == parsed
    assert preview(result.spec, CLUSTER) == [("gpu-master", "CUDA_VISIBLE_DEVICES=0 llama-server --rpc 127.0.0.3:8000"),
                                             ("gpu1", "CUDA_VISIBLE_DEVICES=0 rpc-server --port 8000")]
    wrong = check(dataclasses.replace(values, kind="command"), CLUSTER)
    assert wrong.errors == {"service": "service: these settings are for kind service"}
    bad = check(dataclasses.replace(values, service="port=x"), CLUSTER)
    assert bad.errors["service"] == "service: port: expected a number, got 'x'"


def test_a_fixed_port_held_by_a_running_service_on_a_node_it_may_use_is_refused() -> None:
    running = transition(transition(Job(3, dataclasses.replace(SPEC, port=8100)), JobState.STARTING,
                                    placement=(("gpu1", (0,)),)), JobState.RUNNING,
                         service=ServiceStatus(port=8100, endpoint="gpu1:8100"))
    assert held_ports([running], but=0) == {8100: {"gpu1"}}
    asked = dataclasses.replace(SPEC, port=8100)
    assert "--port 8100 is held on gpu1 by service job 3 (api)" in port_problem(asked, [running], CLUSTER)
    assert port_problem(dataclasses.replace(asked, nodes=("gpu2",)), [running], CLUSTER) is None
    assert port_problem(dataclasses.replace(asked, port=8101), [running], CLUSTER) is None


def test_service_events_have_stable_ids() -> None:
    job = three_roles()
    running = transition(transition(job, JobState.STARTING, placement=job.placement, now=5), JobState.RUNNING)
    ready = dataclasses.replace(running, service=dataclasses.replace(running.service, health="ready", ready_at=9,
                                                                     since=9))
    kinds = {e.id: e.kind for e in job_events(ready, 10)}
    assert kinds == {"job-started:4:2": "job-started", "service-ready:4:2": "service-ready"}
    sick = dataclasses.replace(ready, service=dataclasses.replace(ready.service, health="unhealthy", since=20,
                                                                  last_error="no answer within 5s"))
    [event] = [e for e in job_events(sick, 21) if e.kind.startswith("service")]
    assert event.id == "service-unhealthy:4:2:20" and event.bad and "no answer within 5s" in event.message
    again = transition(sick, JobState.QUEUED, reason="restarting in 1s (restart 1 of 2): unhealthy",
                       service=dataclasses.replace(sick.service, health="restarting", restarts=1, since=30))
    [event] = job_events(again, 31)
    assert event.id == "service-restarted:4:1" and again.health == "restarting"
    # A restart that went by between two looks (queued, placed and started in one round) is still told once, from
    # its count: the first look after it sees the service ready again with one restart.
    back = dataclasses.replace(ready, attempt=3, service=dataclasses.replace(ready.service, restarts=1, since=40,
                                                                            ready_at=41, last_error="unhealthy"))
    ids = {e.id for e in job_events(back, 42)}
    assert {"service-restarted:4:1", "service-ready:4:3"} <= ids


@pytest.mark.parametrize("name", ["serve-tiny", "vllm", "vllm-multinode", "llamacpp-rpc"])
def test_each_shipped_service_template_is_a_valid_job_with_a_script_per_node(name: str) -> None:
    from ugro_tui.cli import _parser
    from ugro_tui.core.jobs.request import spec_from_request

    args: Namespace = _parser().parse_args(["submit", "--template", name])
    spec, _ = spec_from_request(args, CLUSTER)
    assert spec.kind == "service" and spec.health == "/health"
    assert not binds_everywhere({"command": list(spec.command), "worker_command": list(spec.worker_command)})
    job = Job(1, spec, attempt=1, placement=tuple((n.name, (0,)) for n in CLUSTER.nodes[: spec.nnodes]),
              service=ServiceStatus(port=8000, workers=tuple((n.name, 8001 + i) for i, n in
                                                             enumerate(CLUSTER.nodes[1: spec.nnodes]))))
    for p in plan(job, CLUSTER, 29500):
        assert "{port}" not in p.script and "{workers}" not in p.script
        assert subprocess.run(["sh", "-n"], input=p.script, text=True).returncode == 0
    assert templates.path_of(name).is_file()


def test_a_bind_to_every_interface_is_noticed() -> None:
    assert binds_everywhere({"command": ["srv", "--host", "0.0.0.0"]})
    assert binds_everywhere({"command": ["srv"], "worker_command": ["rpc-server", "-H", "0.0.0.0:50052"]})
    assert not binds_everywhere({"command": ["srv", "--host", "127.0.0.1"]})


async def test_the_probe_reads_http_status_lines_and_says_why_it_failed() -> None:
    import asyncio

    from ugro_tui.config import Node
    from ugro_tui.core.services.probe import probe as http_probe
    from ugro_tui.core.transport import LocalTransport

    answers = {"/ok": b"HTTP/1.1 200 OK\r\n\r\n", "/loading": b"HTTP/1.0 503 Service Unavailable\r\n\r\n",
               "/junk": b"SSH-2.0-OpenSSH\r\n", "/quiet": b""}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = (await reader.readline()).split()[1].decode()
        if path == "/quiet":
            await asyncio.sleep(5)
        writer.write(answers[path])
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    local = LocalTransport(Node(name="here", host="localhost"))
    try:
        ok, ms, err = await http_probe(local, "127.0.0.1", port, "/ok", 2)
        assert ok and ms is not None and err == ""
        assert (await http_probe(local, "127.0.0.1", port, "/loading", 2))[2] == \
            "GET /loading: HTTP 503 Service Unavailable"
        assert "not an HTTP answer" in (await http_probe(local, "127.0.0.1", port, "/junk", 2))[2]
        assert (await http_probe(local, "127.0.0.1", port, "/quiet", 0.3))[2] == "no answer within 0.3s"
        assert (await http_probe(local, "127.0.0.1", port, None, 2))[0]  # a TCP connect is enough without a path
    finally:
        server.close()
        await server.wait_closed()
    refused = await http_probe(local, "127.0.0.1", port, "/ok", 2)
    assert refused == (False, None, f"connection refused on 127.0.0.1:{port}")

    class NoForwarding:
        async def open_tcp(self, host: str, port: int):
            raise ConnectionRefusedError(f"gpu1 cannot reach {host}:{port}: administratively prohibited")

    said = (await http_probe(NoForwarding(), "127.0.0.1", 8000, "/health", 2))[2]
    assert "AllowTcpForwarding" in said and said.startswith("gpu1 cannot reach 127.0.0.1:8000")


async def test_a_port_is_held_while_its_listener_takes_no_connection_and_free_once_refused() -> None:
    """A stopped server whose queue is full neither accepts nor refuses: a bind there fails all the same (a frozen
    node's service once lost its restart to that, its port taken for free)."""
    import socket

    from ugro_tui.config import Node
    from ugro_tui.core.services.probe import answers
    from ugro_tui.core.transport import LocalTransport

    local = LocalTransport(Node(name="here", host="localhost"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # and never accepts: as a SIGSTOPped server
    port = listener.getsockname()[1]
    queued = []
    try:
        assert await answers(local, "127.0.0.1", port, 2)  # its queue takes the connection
        for _ in range(20):  # fill the queue: then a connect neither completes nor is refused
            client = socket.socket()
            client.settimeout(0.2)
            queued.append(client)
            try:
                client.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            raise AssertionError("the listener's queue never filled")
        assert await answers(local, "127.0.0.1", port, 0.3)
    finally:
        for client in queued:
            client.close()
        listener.close()
    assert not await answers(local, "127.0.0.1", port, 2)  # refused: free
