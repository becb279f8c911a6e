"""The SSH launcher: starts a placed job detached on every node, follows it, and stops it.

Each node gets a run dir with `run.sh`, `pid`, `exit` and `console.log`. The job runs under `setsid nohup`, so it
survives the app, the dispatcher and the SSH connection; a new dispatcher picks it up again from those files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.diagnose import diagnose
from ugro_tui.core.jobs.dispatcher import Launcher
from ugro_tui.core.jobs.elastic import went_on, without
from ugro_tui.core.jobs.keeper import CheckpointError, CheckpointKeeper
from ugro_tui.core.jobs.leftovers import leftovers_add, leftovers_read, leftovers_remove, sweep_command
from ugro_tui.core.jobs.logs import local_copy, set_aside, sync_node
from ugro_tui.core.jobs.metric import MetricFollower
from ugro_tui.core.jobs.model import Job, JobState, NodeRun, transition
from ugro_tui.core.jobs.planner import plan, run_dir
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.lifecycle import retry_or_fail
from ugro_tui.core.pool import Pool
from ugro_tui.core.services.follow import ServiceFollower
from ugro_tui.core.sync.service import NotReady
from ugro_tui.core.transport import ConnectError, Transport, path_word
from ugro_tui.errors import UgroError

GRACE_SECONDS = 5.0
RETAIN_EVERY = 5.0  # seconds between retention passes while a job runs
METRIC_EVERY = 5.0  # seconds between stored metric updates of a job that no early stopping reads


class SshLauncher(Launcher):
    """Runs over the owner's pool: one connection per node, shared with telemetry and the log followers."""

    def __init__(self, cluster: Cluster, store: JobStore, pool: Pool) -> None:
        super().__init__()
        self.cluster = cluster
        self.store = store
        self.pool = pool
        self.metrics = MetricFollower()
        self.keeper = CheckpointKeeper(cluster, pool)
        self._retained_at: dict[int, float] = {}
        self.services = ServiceFollower(self)
        self._claimed: dict[int, int] = {}  # job id -> the rendezvous port it was given (kept while it is active)

    def transport(self, node: str) -> Transport:
        return self.pool.get(node)

    async def free_port(self, job: Job) -> int:
        """A rendezvous port no other active job uses (cluster-wide: torchrun's store listens on every interface,
        and two node entries may be one machine), nor one handed to a job being started beside it: two jobs placed
        in one round start at once, before either has stored its rendezvous. A plain command needs none."""
        lo, hi = self.cluster.rendezvous_ports
        if job.spec.kind == "command":
            return lo
        active = [j for j in await asyncio.to_thread(self.store.active) if j.id != job.id and j.state.active
                  and j.spec.kind != "command"]
        used = {int(j.rendezvous.rsplit(":", 1)[1]) for j in active if j.rendezvous}
        ids = {j.id for j in active}
        self._claimed = {jid: port for jid, port in self._claimed.items() if jid in ids}
        used |= set(self._claimed.values())
        for port in range(lo, hi + 1):
            if port not in used:
                self._claimed[job.id] = port
                return port
        raise RuntimeError(f"every rendezvous port {lo}-{hi} is in use by a running job")

    async def prepare_nodes(self, job: Job) -> Job:
        """Before anything starts: every placed node has the job's datasets and its code tree, or NotReady says
        why (the job stays queued). Records what code had to travel."""
        from ugro_tui.core.sync import service

        placed = [self.cluster.node(n) for n, _ in job.placement]
        problems = await service.check_data(self.pool, placed, job.spec)
        if problems:
            raise service.NotReady("; ".join(problems))
        if not job.spec.sync_hash:
            return job
        manifest = await asyncio.to_thread(service.CodeStore().manifest, job.spec.sync_hash)
        keep = {j.spec.sync_hash for j in await asyncio.to_thread(self.store.active) if j.spec.sync_hash}
        results = await service.push_to(self.pool, placed, manifest, keep=keep | {job.spec.sync_hash})
        sent = dict(((n, (f, b)) for n, f, b in job.sync_sent))
        for name, result in results.items():
            if not isinstance(result, BaseException):
                f, b = sent.get(name, (0, 0))
                sent[name] = (f + result.files_sent, b + result.bytes_sent)
        record = tuple((n, f, b) for n, (f, b) in sorted(sent.items()))
        failed = [f"{n}: {r}" if not str(r).startswith(n) else str(r) for n, r in results.items()
                  if isinstance(r, BaseException)]
        if failed:  # what reached the other nodes is recorded all the same: the next try sends them nothing
            raise service.NotReady(f"code copy failed on {'; '.join(failed)}", sync_sent=record)
        return dataclasses.replace(job, sync_sent=record)

    async def start(self, job: Job) -> Job:
        job = await self.prepare_nodes(job)
        port = await self.free_port(job)
        if job.spec.checkpoint_dir:
            try:
                job = await self.keeper.prepare_resume(job)
            except CheckpointError as exc:  # never a start from a half-copied checkpoint: it waits, no attempt spent
                raise NotReady(f"its checkpoint could not be copied: {exc}") from None
        job = dataclasses.replace(job, ran_on=tuple(n for n, _ in job.placement))  # where its checkpoints are now
        service = job.spec.kind == "service"
        if service:
            job = await self.services.assign_ports(job)
        plans = plan(job, self.cluster, port, await asyncio.to_thread(self.store.identity))

        if service:
            results = await self.services.start_in_order(job, plans, self._start_node)
        else:
            results = await asyncio.gather(*(self._start_node(p) for p in plans), return_exceptions=True)
        runs = tuple(r for r in results if not isinstance(r, BaseException))
        failed = [r for r in results if isinstance(r, BaseException)]
        endpoint = f"{self.cluster.node(job.placement[0][0]).host}:{port}"
        job = dataclasses.replace(job, runs=runs, rendezvous=endpoint)
        if failed:
            await self._stop(job, signal.SIGKILL)
            raise RuntimeError(str(failed[0]))
        if service:
            assert job.service is not None
            status = dataclasses.replace(job.service, since=time.time())
            if job.state is JobState.RUNNING:  # a restart in place: it never stopped holding its GPUs
                return dataclasses.replace(job, reason=f"starting on {job.service.endpoint}", service=status)
            return transition(job, JobState.RUNNING, reason=f"starting on {job.service.endpoint}", service=status)
        return transition(job, JobState.RUNNING, reason="running")

    async def _start_node(self, p) -> tuple[str, NodeRun]:
        """One round trip per node: a clean run dir, the script from stdin, and the detached start."""
        rd = path_word(p.run_dir)
        script = (f"rm -rf {rd} && mkdir -p {rd} && cat > {rd}/run.sh && chmod 755 {rd}/run.sh && "
                  f"{{ setsid nohup sh {rd}/run.sh >{rd}/console.log 2>&1 </dev/null & echo $!; }}")
        done = await self.transport(p.node).run(script, stdin=p.script.encode())
        if not done.ok or not done.stdout.strip().isdigit():
            raise RuntimeError(f"{p.node}: could not start the job: {done.stderr.strip() or done.stdout.strip()}")
        return p.node, NodeRun(pid=int(done.stdout.strip()), run_dir=p.run_dir)

    async def grow(self, job: Job, node: str, gpus: tuple[int, ...]) -> Job:
        """An elastic job below MAX: its agent on one more node, under the same rendezvous; the running agents take
        it in at their next check (torchrun restarts their workers, which resume from the newest checkpoint)."""
        grown = dataclasses.replace(job, placement=(*job.placement, (node, gpus)))
        port = int((job.rendezvous or ":0").rsplit(":", 1)[1])
        [p] = [p for p in plan(grown, self.cluster, port, await asyncio.to_thread(self.store.identity))
               if p.node == node]
        await asyncio.to_thread(set_aside, job, node)  # its earlier part on that node, if any, keeps its log
        name, run = await self._start_node(p)
        return dataclasses.replace(grown, runs=(*job.runs, (name, run)),
                                   ran_on=tuple(dict.fromkeys((*job.ran_on, node))))

    async def shed(self, job: Job, nodes: set[str]) -> Job:
        """Its agents there get TERM with the preemption grace (the workers save, torchrun re-forms the group on
        the nodes left), then KILL."""
        part = dataclasses.replace(job, runs=tuple((n, r) for n, r in job.runs if n in nodes))
        await self.terminate(part, grace=self.cluster.preempt_grace)
        smaller = without(job, nodes)
        if smaller is None:  # the placement changed meanwhile: nothing else of it is stopped
            raise UgroError(f"job {job.id} cannot go on without {', '.join(sorted(nodes))}")
        return smaller

    async def _status(self, job: Job, node: str, run: NodeRun) -> NodeRun:
        rd = path_word(run.run_dir or "")
        t = self.transport(node)
        # Builtins only (`read`, not `cat`): it runs each round on every node of every running job.
        done = await t.run(f"if [ -f {rd}/exit ]; then c=; read -r c < {rd}/exit; echo \"$c\"; "
                           f"elif kill -0 {int(run.pid or 0)} 2>/dev/null; then echo running; else echo lost; fi",
                           timeout=self.cluster.connect_timeout)
        word = done.stdout.strip()
        if word.lstrip("-").isdigit():
            return dataclasses.replace(run, exit_code=int(word))
        if word == "lost":  # killed without writing its exit code (SIGKILL, or the node rebooted)
            return dataclasses.replace(run, exit_code=137)
        return run

    async def sync_logs(self, job: Job, skip: set[str] = frozenset()) -> None:
        """Bring the local copies of every node's logs up to date (see logs.py); `skip`: nodes not answering now."""
        await asyncio.gather(*(sync_node(self.transport(n), job, n, r.run_dir) for n, r in job.runs
                               if r.run_dir and n not in skip and n in self.pool), return_exceptions=True)

    def diagnose(self, job: Job) -> str | None:
        """Reads the copies' tails: call it in a thread."""
        text = "\n".join(tail_text(local_copy(job, n)) for n, _ in job.runs)
        found = diagnose(text, {n: r.exit_code for n, r in job.runs})
        return str(found) if found else None

    async def poll(self, job: Job) -> Job:
        """The job as its nodes say it is now. A node that cannot be reached is left as it was and named in
        `unreachable[job.id]`; the dispatcher decides when such a node counts as lost."""
        answers = await asyncio.gather(*(self._status(job, n, r) for n, r in job.runs), return_exceptions=True)
        missing = {n for (n, _), a in zip(job.runs, answers, strict=True) if isinstance(a, BaseException)}
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, (ConnectError, OSError, TimeoutError)):
                raise answer
        self.unreachable[job.id] = missing
        runs = tuple((n, r if isinstance(a, BaseException) else a)
                     for (n, r), a in zip(job.runs, answers, strict=True))
        await self.sync_logs(job, skip=missing)  # a frozen node would hold the follow up for the copy's deadline
        if job.spec.kind == "service":
            return await self.services.poll(job, runs, missing)
        ended = all(r.exit_code is not None for _, r in runs)
        metric = await self._metric(job)
        progress = self.metrics.progress(job)
        if (metric != job.metric or progress != job.progress) and (ended or self.metrics.due(job, METRIC_EVERY)):
            job = dataclasses.replace(job, metric=metric, progress=progress)
        job = dataclasses.replace(job, runs=runs)
        await self._retain(dataclasses.replace(job, metric=metric), ended=ended)  # keep_best: the freshest values
        codes = {n: r.exit_code for n, r in job.runs}
        bad = {n: c for n, c in codes.items() if c not in (None, 0)}
        smaller = without(job, bad) if bad and any(c is None for c in codes.values()) else None
        if smaller is not None:  # an elastic job's node ended badly: the others re-form without it
            return await asyncio.to_thread(went_on, smaller, f"node {_exits(bad)}")
        if bad and any(c is None for c in codes.values()):
            await self._stop(job, signal.SIGTERM)  # one node failed: tear down the others
            return job
        if all(c is not None for c in codes.values()):
            self.metrics.forget(job.id)
            if not bad:
                return transition(job, JobState.SUCCEEDED, reason="every node exited 0")
            # The attempt is over: whatever of it survived its shell (a torchrun agent stuck in its shutdown after
            # a peer died) is killed, or it would hold its GPU and the retry could not be placed.
            await self._stop(job, signal.SIGKILL)
            found = await asyncio.to_thread(self.diagnose, job)
            return self._failed(job, _exits(bad), found)
        return job

    def start_failed(self, job: Job, error: Exception) -> Job:
        """A failed start: the job fails; a service restarts by its policy instead."""
        if job.spec.kind == "service":
            return self.services.start_failed(job, error)
        return super().start_failed(job, error)

    def _failed(self, job: Job, why: str, diagnosis: str | None) -> Job:
        """The attempt failed: queued again while retries are left, else failed."""
        if job.spec.kind == "service":  # services restart by their policy, not by max_retries
            return transition(job, JobState.FAILED, reason=why, diagnosis=diagnosis)
        return retry_or_fail(job, why, diagnosis)

    async def lose(self, job: Job, lost: dict[str, float]) -> Job:
        """Nodes of a running job stayed unreachable too long: an elastic job goes on without them while MIN
        remain; any other attempt ends now, the others torn down. The lost nodes are swept when they come back."""
        await asyncio.to_thread(leftovers_add, [(job.id, node) for node in lost])
        since = ", ".join(f"node {n} lost (unreachable since {time.strftime('%H:%M:%S', time.localtime(t))})"
                          for n, t in sorted(lost.items()))
        smaller = without(job, lost)
        if smaller is not None:
            return await asyncio.to_thread(went_on, smaller, since)
        reachable = dataclasses.replace(job, runs=tuple((n, r) for n, r in job.runs if n not in lost))
        await self._stop(reachable, signal.SIGKILL)  # at once: the attempt is over, nothing of it can finish
        if job.spec.kind == "service":
            return await self.services.lost(reachable, since, since)
        return self._failed(job, since, since)

    async def reconcile(self, job: Job) -> Job:
        """A job left `starting` by a dispatcher that died while launching it: adopt it if every node runs it,
        else sweep whatever started and fail (or retry) the attempt."""
        placed = [self.cluster.node(n) for n, _ in job.placement]
        words = await asyncio.gather(*(self.transport(n.name).run(
            f"rd={path_word(run_dir(n, job))}; cat \"$rd/pid\" 2>/dev/null || echo none; "
            f"sed -n 's/.*--rdzv-endpoint \\([^ ]*\\).*/\\1/p' \"$rd/run.sh\" 2>/dev/null | head -n 1",
            timeout=self.cluster.connect_timeout) for n in placed), return_exceptions=True)
        runs, endpoint = [], None
        for node, done in zip(placed, words, strict=True):
            lines = [] if isinstance(done, BaseException) else done.stdout.split()
            if lines and lines[0].isdecimal():
                runs.append((node.name, NodeRun(pid=int(lines[0]), run_dir=run_dir(node, job))))
                endpoint = endpoint or (lines[1] if len(lines) > 1 else None)
        job = dataclasses.replace(job, runs=tuple(runs), rendezvous=endpoint)
        if len(runs) == len(placed):
            return transition(job, JobState.RUNNING, reason="running (taken over after the dispatcher restarted)")
        await self._stop(dataclasses.replace(job, runs=tuple((n.name, NodeRun()) for n in placed)), signal.SIGKILL)
        if not runs or job.spec.kind == "service":  # the dispatcher's crash is not the job's failure: none spent
            return transition(job, JobState.QUEUED, reason="queued again: its launch was interrupted before it ran")
        return self._failed(job, "its launch was interrupted (the dispatcher stopped while starting it)", None)

    async def started_before(self, job: Job) -> tuple[tuple[str, NodeRun], ...]:
        """A starting job whose attempt may already run somewhere: the store lost the write that started it (a
        recovery from the previous generation). Returns the runs of that attempt found alive on the nodes."""
        attempt = job
        nodes = [n for n in self.cluster.nodes if n.name in self.pool]
        answers = await asyncio.gather(*(self.transport(n.name).run(
            f"rd={path_word(run_dir(n, attempt))}; p=$(cat \"$rd/pid\" 2>/dev/null) && kill -0 \"$p\" 2>/dev/null "
            "&& echo \"$p\" || true", timeout=self.cluster.connect_timeout) for n in nodes), return_exceptions=True)
        runs = tuple((n.name, NodeRun(pid=int(a.stdout.strip()), run_dir=run_dir(n, attempt)))
                     for n, a in zip(nodes, answers, strict=True)
                     if not isinstance(a, BaseException) and a.stdout.strip().isdecimal())
        return runs

    async def sweep_leftovers(self, online: set[str]) -> None:
        """Kill what a lost or unreachable node still runs of finished attempts, once it is back."""
        due = [(j, n) for j, n in await asyncio.to_thread(leftovers_read) if n in online and n in self.pool]
        store = await asyncio.to_thread(self.store.identity)
        timeout = self.cluster.connect_timeout
        done = await asyncio.gather(*(self.transport(n).run(sweep_command(j, n, store), timeout=timeout)
                                      for j, n in due), return_exceptions=True)
        swept = [d for d, r in zip(due, done, strict=True) if not isinstance(r, BaseException)]
        if swept:
            await asyncio.to_thread(leftovers_remove, swept)

    async def _retain(self, job: Job, *, ended: bool) -> None:
        """Checkpoint retention, every few seconds while a job runs and once when it ends; best effort (a node
        that does not answer keeps its checkpoints until the next time)."""
        if job.spec.keep_last is None and job.spec.keep_best is None:
            return
        now = time.monotonic()
        if not ended and now - self._retained_at.get(job.id, 0.0) < RETAIN_EVERY:
            return
        self._retained_at[job.id] = now
        with contextlib.suppress(CheckpointError, ConnectError, OSError, TimeoutError, UgroError):
            await self.keeper.retain(job, ended=ended)
        if ended:
            self._retained_at.pop(job.id, None)

    async def _metric(self, job: Job) -> tuple:
        try:
            return await asyncio.to_thread(self.metrics.update, job, time.time())
        except OSError:  # the copies could not be read this time; the history stays as it was
            return job.metric

    async def terminate(self, job: Job, grace: float = GRACE_SECONDS) -> set[str]:
        """TERM every process of the job, wait up to `grace` for them to go, then KILL what is left; returns the
        nodes that did not answer. The logs' copies are brought up to date last."""
        await self._stop(job, signal.SIGTERM)
        unreachable: set[str] = set()
        for _ in range(int(grace / 0.25)):
            answers = await asyncio.gather(*(self.transport(n).alive(r.pid) for n, r in job.runs if r.pid),
                                           return_exceptions=True)
            unreachable = {n for (n, r), a in zip([x for x in job.runs if x[1].pid], answers, strict=True)
                           if isinstance(a, BaseException)}
            if not any(a is True for a in answers) and not await self._session_left(job):
                break
            await asyncio.sleep(0.25)
        # KILL whatever is left, found by its env: a torchrun agent can outlive its shell's TERM and would keep
        # its GPU and its rendezvous port (the next job given that port would fail to bind it).
        await self._stop(job, signal.SIGKILL)
        await self.sync_logs(job)
        return unreachable

    async def preempt(self, job: Job) -> Job:
        """TERM with `preempt_grace` to save (UGRO_PREEMPT_GRACE told the job), KILL after it, then queued again
        with the reason; it spends no retry, and resumes from its newest complete checkpoint when placed again."""
        unreachable = await self.terminate(job, self.cluster.preempt_grace)
        job = dataclasses.replace(job, metric=await self._metric(job))
        self.metrics.forget(job.id)
        if unreachable:  # its processes there are swept when the node is back
            await asyncio.to_thread(leftovers_add, [(job.id, n) for n in sorted(unreachable)])
        return transition(job, JobState.QUEUED, reason=job.preempt)

    async def session_probe(self, job: Job, message: str):
        from ugro_tui.core.sessions import probe

        node, run = job.runs[0]
        jupyter = f"{run.run_dir}/jupyter" if job.spec.jupyter and run.run_dir else ""
        script = probe.command(self.cluster.node(node), job.id, await asyncio.to_thread(self.store.identity), message,
                               jupyter)
        done = await self.transport(node).run(script, timeout=self.cluster.connect_timeout)
        if not done.ok:
            raise probe.ProbeFailed(f"{node}: {done.stderr.strip() or 'the session probe failed'}")
        return probe.parse(done.stdout)

    async def _session_left(self, job: Job) -> bool:
        """A session's processes outlive its keeper (a shell, an editor saving): they get the whole grace."""
        if job.spec.kind != "session":
            return False
        from ugro_tui.core.sessions.probe import PROBE_ERRORS

        with contextlib.suppress(*PROBE_ERRORS):  # a node that does not answer: its processes are swept by env
            return bool((await self.session_probe(job, "")).pids)
        return False

    async def cancel(self, job: Job) -> Job:
        grace = self.cluster.session_grace if job.spec.kind == "session" else GRACE_SECONDS
        unreachable = await self.terminate(job, grace)
        job = dataclasses.replace(job, metric=await self._metric(job))
        self.metrics.forget(job.id)
        if unreachable:  # its processes there are swept when the node is back
            await asyncio.to_thread(leftovers_add, [(job.id, n) for n in sorted(unreachable)])
            return transition(job, JobState.CANCELLED, reason=f"cancelled by the user; {', '.join(sorted(unreachable))}"
                              " unreachable: swept when back")
        return transition(job, JobState.CANCELLED, reason="cancelled by the user")

    async def _stop(self, job: Job, sig: signal.Signals) -> None:
        await asyncio.gather(*(self.transport(n).signal_group(r.pid, sig) for n, r in job.runs
                               if r.pid and n in self.pool), return_exceptions=True)
        if sig is signal.SIGKILL or job.spec.kind == "session":  # torchrun's workers, a session's shells: by env
            store = await asyncio.to_thread(self.store.identity)
            timeout = self.cluster.connect_timeout
            await asyncio.gather(*(self.transport(n).run(sweep_command(job.id, n, store, sig), timeout=timeout)
                                   for n, _ in job.runs if n in self.pool), return_exceptions=True)




def tail_text(path, size: int = 1 << 16) -> str:
    """The end of a local file as text (a log copy's last 64 KiB, for the diagnosis); empty if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _exits(bad: dict[str, int | None]) -> str:
    return "; ".join(f"{node} exited {code}" for node, code in bad.items())
