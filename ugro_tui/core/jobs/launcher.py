"""The SSH launcher: starts a placed job detached on every node, follows it, and stops it.

Each node gets a run dir with `run.sh`, `pid`, `exit` and `console.log`. The job runs under `setsid nohup`, so it
survives the app, the dispatcher and the SSH connection; a new dispatcher picks it up again from those files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
import signal

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.diagnose import diagnose
from ugro_tui.core.jobs.logs import local_copy, sync_node
from ugro_tui.core.jobs.model import Job, JobState, NodeRun, transition
from ugro_tui.core.jobs.planner import plan
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.core.transport import ConnectError, Transport, path_word

GRACE_SECONDS = 5.0


class SshLauncher:
    """Runs over the owner's pool: one connection per node, shared with telemetry and the log followers."""

    def __init__(self, cluster: Cluster, store: JobStore, pool: Pool) -> None:
        self.cluster = cluster
        self.store = store
        self.pool = pool

    def _t(self, node: str) -> Transport:
        return self.pool.get(node)

    async def free_port(self, job: Job) -> int:
        """A rendezvous port no other running job uses (jobs on one host share its ports)."""
        used = {int(j.rendezvous.rsplit(":", 1)[1]) for j in await asyncio.to_thread(self.store.active)
                if j.id != job.id and j.state.active and j.rendezvous}
        lo, hi = self.cluster.rendezvous_ports
        for port in range(lo, hi + 1):
            if port not in used:
                return port
        raise RuntimeError(f"every rendezvous port {lo}-{hi} is in use by a running job")

    async def start(self, job: Job) -> Job:
        port = await self.free_port(job)
        plans = plan(job, self.cluster, port)

        async def start_node(p) -> tuple[str, NodeRun]:
            # One round trip per node: a clean run dir, the script from stdin, and the detached start.
            rd = path_word(p.run_dir)
            script = (f"rm -rf {rd} && mkdir -p {rd} && cat > {rd}/run.sh && chmod 755 {rd}/run.sh && "
                      f"{{ setsid nohup sh {rd}/run.sh >{rd}/console.log 2>&1 </dev/null & echo $!; }}")
            done = await self._t(p.node).run(script, stdin=p.script.encode())
            if not done.ok or not done.stdout.strip().isdigit():
                raise RuntimeError(f"{p.node}: could not start the job: {done.stderr.strip() or done.stdout.strip()}")
            return p.node, NodeRun(pid=int(done.stdout.strip()), run_dir=p.run_dir)

        results = await asyncio.gather(*(start_node(p) for p in plans), return_exceptions=True)
        runs = tuple(r for r in results if not isinstance(r, BaseException))
        failed = [r for r in results if isinstance(r, BaseException)]
        endpoint = f"{self.cluster.node(job.placement[0][0]).host}:{port}"
        job = dataclasses.replace(job, runs=runs, rendezvous=endpoint)
        if failed:
            await self._stop(job, signal.SIGKILL)
            raise RuntimeError(str(failed[0]))
        return transition(job, JobState.RUNNING, reason="running")

    async def _status(self, job: Job, node: str, run: NodeRun) -> NodeRun:
        rd = path_word(run.run_dir or "")
        t = self._t(node)
        done = await t.run(f"cat {rd}/exit 2>/dev/null || {{ kill -0 {int(run.pid or 0)} 2>/dev/null && echo running"
                           " || echo lost; }", timeout=self.cluster.connect_timeout)
        word = done.stdout.strip()
        if word.lstrip("-").isdigit():
            return dataclasses.replace(run, exit_code=int(word))
        if word == "lost":  # killed without writing its exit code (SIGKILL, or the node rebooted)
            return dataclasses.replace(run, exit_code=137)
        return run

    async def sync_logs(self, job: Job) -> None:
        """Bring the local copies of every node's console log up to date (see logs.py)."""
        await asyncio.gather(*(sync_node(self._t(n), job, n, r.run_dir) for n, r in job.runs if r.run_dir),
                             return_exceptions=True)

    def _diagnose(self, job: Job) -> str | None:
        """Reads the copies' tails: call it in a thread."""
        text = "\n".join(_tail(local_copy(job, n)) for n, _ in job.runs)
        found = diagnose(text, {n: r.exit_code for n, r in job.runs})
        return str(found) if found else None

    async def poll(self, job: Job) -> Job:
        try:
            runs = await asyncio.gather(*(self._status(job, n, r) for n, r in job.runs))
        except (ConnectError, OSError, TimeoutError):
            return job  # a node we cannot reach now: ask again next tick
        await self.sync_logs(job)
        job = dataclasses.replace(job, runs=tuple(zip((n for n, _ in job.runs), runs, strict=True)))
        codes = {n: r.exit_code for n, r in job.runs}
        bad = {n: c for n, c in codes.items() if c not in (None, 0)}
        if bad and any(c is None for c in codes.values()):
            await self._stop(job, signal.SIGTERM)  # one node failed: tear down the others
            return job
        if all(c is not None for c in codes.values()):
            if not bad:
                return transition(job, JobState.SUCCEEDED, reason="every node exited 0")
            found = await asyncio.to_thread(self._diagnose, job)
            if job.attempt <= job.spec.max_retries:
                resume = " from its checkpoint dir" if job.spec.checkpoint_dir else ""
                return transition(job, JobState.QUEUED, reason=f"retrying{resume}: {_exits(bad)}", diagnosis=found)
            return transition(job, JobState.FAILED, reason=_exits(bad), diagnosis=found)
        return job

    async def cancel(self, job: Job) -> Job:
        await self._stop(job, signal.SIGTERM)
        for _ in range(int(GRACE_SECONDS / 0.25)):
            if not any(await asyncio.gather(*(self._t(n).alive(r.pid) for n, r in job.runs if r.pid))):
                break
            await asyncio.sleep(0.25)
        else:
            await self._stop(job, signal.SIGKILL)
        await self.sync_logs(job)
        return transition(job, JobState.CANCELLED, reason="cancelled by the user")

    async def _stop(self, job: Job, sig: signal.Signals) -> None:
        await asyncio.gather(*(self._t(n).signal_group(r.pid, sig) for n, r in job.runs if r.pid),
                             return_exceptions=True)
        if sig is signal.SIGKILL:  # torchrun's workers run in sessions of their own: find them by their env
            await asyncio.gather(*(self._t(n).run(sweep_command(job.id, n)) for n, _ in job.runs),
                                 return_exceptions=True)


def sweep_command(job_id: int, node: str) -> str:
    """KILL every process on the node whose environment says it belongs to this job on this node."""
    want = shlex.quote(f"UGRO_JOB_ID={int(job_id)}")
    here = shlex.quote(f"UGRO_NODE={node}")
    return ("for p in /proc/[0-9]*; do e=$(tr '\\0' '\\n' < \"$p/environ\" 2>/dev/null) || continue; "
            f"printf '%s\\n' \"$e\" | grep -qx {want} && printf '%s\\n' \"$e\" | grep -qx {here} && "
            "kill -9 \"${p#/proc/}\" 2>/dev/null; done; true")


def _tail(path, size: int = 1 << 16) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _exits(bad: dict[str, int | None]) -> str:
    return "; ".join(f"{node} exited {code}" for node, code in bad.items())
