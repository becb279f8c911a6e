"""The launcher's side of services: ports before the start, workers before the head, then each poll a probe when
one is due and the restart policy when it fails or a process ends."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ugro_tui.core.jobs.leftovers import leftovers_add
from ugro_tui.core.jobs.model import Job, JobState, NodeRun, transition
from ugro_tui.core.services import roles
from ugro_tui.core.services.probe import NODE_LOOPBACK, answers, probe
from ugro_tui.core.services.status import (
    ServiceStatus,
    Verdict,
    after_exit,
    after_probe,
    backoff,
    restart_or_give_up,
)
from ugro_tui.core.sync.service import NotReady

WORKER_WAIT_STEP = 0.5


def held_ports(jobs: list[Job], but: int) -> dict[int, set[str]]:
    """Ports the other active services hold: port -> nodes."""
    out: dict[int, set[str]] = {}
    for job in jobs:
        status = job.service
        if job.id == but or not job.state.active or status is None or not status.port or not job.placement:
            continue
        out.setdefault(status.port, set()).add(job.placement[0][0])
        for node, port in status.workers:
            out.setdefault(port, set()).add(node)
    return out


def port_problem(spec: Any, jobs: list[Job], cluster: Any) -> str | None:
    """A fixed port that a running service already holds on a node this one may be placed on."""
    from ugro_tui.core.jobs.placement import NodeCapacity, allowed

    able = {n.name for n in cluster.nodes if allowed(Job(0, spec), NodeCapacity(n.name, n.labels))}
    for other in jobs:
        if other.state.active and other.service and other.placement:
            holders = {other.placement[0][0]} if other.service.port == spec.port else set()
            holders |= {n for n, p in other.service.workers if p == spec.port}
            if holders & able:
                node = sorted(holders & able)[0]
                return (f"--port {spec.port} is held on {node} by service job {other.id} ({other.spec.name}); "
                        "pick another port or --nodes")
    return None


class ServiceFollower:
    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.cluster = launcher.cluster

    async def _in_use(self, node: str, port: int) -> bool:
        """Something already answers on the node's port (another program, or a service ugro lost track of)."""
        return await answers(self.launcher.transport(node), self.cluster.node(node).host, port,
                             self.cluster.connect_timeout)

    async def assign_ports(self, job: Job) -> Job:
        """The head's port (its --port, else a free one from service_ports) and one per worker; stored before
        anything starts, so a dispatcher that dies mid-start leaves them known."""
        others = held_ports(await asyncio.to_thread(self.launcher.store.active), job.id)
        taken = {p for p in others}  # ports are unique across the cluster: loopback labs share one host
        lo, hi = self.cluster.service_ports
        nodes = [n for n, _ in job.placement]

        old = job.service or ServiceStatus()
        before = {nodes[0]: old.port, **dict(old.workers)} if old.port else dict(old.workers)

        async def pick(node: str, fixed: int | None) -> int:
            if fixed is not None:
                if fixed in others and node in others[fixed]:
                    raise NotReady(f"port {fixed} on {node} is held by another running service")
                if await self._in_use(node, fixed):
                    raise NotReady(f"port {fixed} on {node} is in use by another program")
                taken.add(fixed)
                return fixed
            last = before.get(node)  # a restart keeps its port where it can: clients and forwards find it again
            for port in ([last] if last and lo <= last <= hi else []) + list(range(lo, hi + 1)):
                if port not in taken and not await self._in_use(node, port):
                    taken.add(port)
                    return port
            raise NotReady(f"no free port in service_ports {lo}-{hi} on {node}")

        head = await pick(nodes[0], job.spec.port)
        workers = tuple([(n, await pick(n, None)) for n in nodes[1:]])
        status = dataclasses.replace(old, health="starting", port=head, endpoint=f"{nodes[0]}:{head}",
                                     workers=workers, failures=0, ready_at=None, since=time.time(), next_start=0.0,
                                     avoid=())
        job = dataclasses.replace(job, service=status)
        await asyncio.to_thread(self.launcher.store.update, job.id,
                                lambda cur: dataclasses.replace(cur, service=status) if cur.state.active else cur)
        return job

    async def start_in_order(self, job: Job, plans: list, start_node: Callable[[Any], Awaitable[tuple[str, NodeRun]]]
                             ) -> list[Any]:
        """Workers first; where their command has `{port}`, the head starts once each accepts connections."""
        workers, head = plans[1:], plans[0]
        results: list[Any] = list(await asyncio.gather(*(start_node(p) for p in workers), return_exceptions=True))
        if any(isinstance(r, BaseException) for r in results):
            return results
        words = job.spec.worker_command or job.spec.command
        if workers and any(roles.FIELD_RE.search(w) and "{port}" in w for w in words):
            problem = await self._wait_for_workers(job, dict(results))
            if problem:
                return [*results, RuntimeError(problem)]
        try:
            results.insert(0, await start_node(head))
        except Exception as exc:
            results.insert(0, exc)
        return results

    async def _wait_for_workers(self, job: Job, runs: dict[str, NodeRun]) -> str | None:
        """None once every worker accepts connections; else why not (one exited, the deadline, a cancel)."""
        assert job.service is not None
        deadline = time.monotonic() + job.spec.health_initial_delay
        waiting = dict(job.service.workers)
        while waiting:
            for node, port in list(waiting.items()):
                ok, _, _ = await probe(self.launcher.transport(node), self.cluster.node(node).host, port, None,
                                       job.spec.health_timeout)
                if ok:
                    waiting.pop(node)
                elif runs.get(node) and runs[node].pid and \
                        not await self.launcher.transport(node).alive(runs[node].pid):
                    return f"the worker on {node} exited before it accepted connections on port {port} (see its log)"
            if not waiting:
                return None
            current = await asyncio.to_thread(self.launcher.store.get, job.id)
            if current.cancel_requested:
                return "cancelled while its workers started"
            if time.monotonic() > deadline:
                names = ", ".join(f"{n}:{p}" for n, p in waiting.items())
                return f"worker(s) {names} did not accept connections within {job.spec.health_initial_delay:g}s"
            await asyncio.sleep(WORKER_WAIT_STEP)
        return None

    async def poll(self, job: Job, runs: tuple[tuple[str, NodeRun], ...], missing: set[str]) -> Job:
        """A running service after its nodes answered: exits first, then a probe when one is due."""
        status = job.service or ServiceStatus()
        job = dataclasses.replace(job, runs=runs)
        codes = {n: r.exit_code for n, r in runs}
        now = time.time()
        if status.health == "restarting":
            return await self.relaunch(job, status, now)
        if any(c is not None for c in codes.values()):
            ended = {n: c for n, c in codes.items() if c is not None}
            why = "; ".join(f"{n} exited {c}" for n, c in ended.items())
            return await self.apply(job, after_exit(status, job.spec, why, all(c == 0 for c in codes.values())))
        if now - status.last_probe_at < job.spec.health_period:
            return job
        head = job.placement[0][0]
        if head in missing:
            ok, ms, error = False, None, f"{head} does not answer"
        else:
            ok, ms, error = await probe(self.launcher.transport(head), NODE_LOOPBACK, status.port or 0, job.spec.health,
                                        job.spec.health_timeout)
            if ms is None:  # nothing answered, through the node's connection: say which node it was
                error = f"{head}: {error}"
        verdict = after_probe(status, job.spec, job.started_at or now, now, ok, ms, error)
        return await self.apply(job, verdict)

    async def apply(self, job: Job, verdict: Verdict, away: set[str] | None = None) -> Job:
        """Carry out a verdict: keep it running (with a reason that says how it is), restart it, or end it."""
        status, now = verdict.status, time.time()
        if verdict.action == "keep":
            return dataclasses.replace(job, service=status, reason=reason_of(job, status))
        unanswered = set(self.launcher.unreachable.get(job.id, set())) - set(away or ())
        if unanswered:  # never wait on a node that does not answer: what runs there is swept once it is back
            await asyncio.to_thread(leftovers_add, [(job.id, n) for n in sorted(unanswered)])
        away = unanswered | set(away or ())  # lost nodes (given) are already recorded by the launcher
        # The service's part everywhere else; a short grace: it is restarting or failing, not asked to stop.
        await self.launcher.terminate(dataclasses.replace(job, runs=tuple((n, r) for n, r in job.runs
                                                                          if n not in away)), grace=2.0)
        if verdict.action == "succeed":
            return transition(job, JobState.SUCCEEDED, reason=verdict.why, service=status)
        if verdict.action == "restart":
            verdict = restart_or_give_up(status, job.spec, verdict.why, now)
        found = await asyncio.to_thread(self.launcher.diagnose, job)
        if verdict.action == "restart":
            new = dataclasses.replace(verdict.status, avoid=tuple(sorted(away)))
            wait = max(0.0, new.next_start - now)
            why = f"restarting in {wait:.0f}s (restart {new.restarts} of {job.spec.max_restarts}): {verdict.why}"
            if away:  # a node stopped answering: queued again, to be placed where it fits
                return transition(job, JobState.QUEUED, service=new, diagnosis=found, reason=why)
            return dataclasses.replace(job, service=new, diagnosis=found, reason=why)  # in place: it keeps its GPUs
        return transition(job, JobState.FAILED, reason=verdict.why, diagnosis=found,
                          service=dataclasses.replace(verdict.status, since=now))

    async def relaunch(self, job: Job, status: ServiceStatus, now: float) -> Job:
        """A restart in place, once its backoff is over: a new attempt on the same nodes and GPUs."""
        if now < status.next_start:
            return job
        again = dataclasses.replace(job, attempt=job.attempt + 1, started_at=now, runs=(), rendezvous=None)
        try:
            return await self.launcher.start(again)
        except Exception as exc:  # counted as one more restart; a node that refused is avoided next time
            return self.start_failed(again, exc)

    def start_failed(self, job: Job, error: Exception) -> Job:
        """A start that failed (a node refused, a port was taken) is one more restart, as the policy allows."""
        status = job.service or ServiceStatus()
        why = f"could not start: {error}"
        if job.spec.restart == "never":
            return transition(job, JobState.FAILED, reason=f"{why} (restart policy never)", service=status)
        verdict = restart_or_give_up(status, job.spec, why, time.time())
        if verdict.action == "fail":
            return transition(job, JobState.FAILED, reason=verdict.why, service=verdict.status)
        new = dataclasses.replace(verdict.status, avoid=tuple(n for n, _ in job.placement))
        return transition(job, JobState.QUEUED, service=new, reason=f"restarting in {backoff(new.restarts):.0f}s "
                          f"(restart {new.restarts} of {job.spec.max_restarts}): {why}")

    async def lost(self, job: Job, why: str, diagnosis: str | None) -> Job:
        """Its node was lost (the rest are stopped already): restart where it fits, if the policy allows."""
        status = dataclasses.replace(job.service or ServiceStatus(), health="unhealthy", since=time.time())
        lost = {n for n, _ in job.placement} - {n for n, _ in job.runs}  # `job` holds only the reachable runs
        if job.spec.restart == "never":
            return transition(job, JobState.FAILED, reason=f"{why} (restart policy never)", diagnosis=diagnosis,
                              service=status)
        return await self.apply(job, Verdict(status, "restart", why), away=lost)


def reason_of(job: Job, status: ServiceStatus) -> str:
    """The reason column of a running service: how it is, in a few words."""
    restarts = f", {status.restarts} restart{'s' if status.restarts != 1 else ''}" if status.restarts else ""
    if status.health == "ready":
        ms = status.last_latency
        return f"ready on {status.endpoint}" + (f" (probe {ms:.0f} ms{restarts})" if ms is not None else "")
    what = f"GET {job.spec.health}" if job.spec.health else f"port {status.port}"
    if status.health == "unhealthy":
        return f"unhealthy: {status.failures} failed probe(s) in a row: {status.last_error}"
    last = f" (last: {status.last_error})" if status.last_error else ""
    return f"starting: waiting for {what} to answer{last}"
