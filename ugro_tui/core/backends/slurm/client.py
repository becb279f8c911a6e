"""Slurm's commands, run on the login node over its SSH connection, each with a deadline."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from ugro_tui.config import Cluster
from ugro_tui.core.backends.slurm.script import Submission
from ugro_tui.core.backends.slurm.states import (
    SACCT_FORMAT,
    SlurmJob,
    SlurmNode,
    parse_sacct,
    parse_scontrol_job,
    parse_sinfo,
    parse_squeue,
)
from ugro_tui.core.pool import Pool
from ugro_tui.core.transport import RunResult, Transport, path_word
from ugro_tui.errors import UgroError


class SlurmError(UgroError):
    """Slurm refused or could not answer; the message is Slurm's own."""


def slurm_said(done: RunResult) -> str:
    """Slurm's message without its program prefix: "sbatch: error: Batch job submission failed: X" -> "X"."""
    text = (done.stderr.strip() or done.stdout.strip()).splitlines()
    line = next((x for x in reversed(text) if "error" in x.lower()), text[-1] if text else f"exit {done.exit_code}")
    for cut in ("Batch job submission failed: ", "error: "):
        if cut in line:
            line = line.split(cut, 1)[1]
    return line.strip()


class SlurmClient:
    def __init__(self, cluster: Cluster, pool: Pool | Callable[[str], Transport]) -> None:
        assert cluster.slurm is not None
        self.cluster = cluster
        self.transport = pool.get if isinstance(pool, Pool) else pool
        self.login = cluster.slurm.login
        self.timeout = max(15.0, 3 * cluster.connect_timeout)
        conf = cluster.slurm.conf
        self.prefix = f"export SLURM_CONF={path_word(conf)}; " if conf else ""

    async def run(self, script: str, *, check: bool = True) -> RunResult:
        done = await self.transport(self.login).run(self.prefix + script, timeout=self.timeout)
        if check and not done.ok:
            raise SlurmError(slurm_said(done))
        return done

    async def queue(self) -> dict[str, SlurmJob]:
        done = await self.run("squeue --json")
        try:
            return parse_squeue(done.stdout)
        except ValueError as exc:
            raise SlurmError(f"squeue --json gave no JSON ({exc})") from None

    async def nodes(self) -> list[SlurmNode]:
        done = await self.run("sinfo --json")
        try:
            return parse_sinfo(done.stdout)
        except ValueError as exc:
            raise SlurmError(f"sinfo --json gave no JSON ({exc})") from None

    async def remembered(self, job_id: str) -> SlurmJob | None:
        """A job no longer in the queue: scontrol while slurmctld remembers it, else sacct where accounting runs."""
        q = shlex.quote(job_id)
        done = await self.run(f"scontrol show job -o {q} 2>/dev/null; echo '--'; "
                              f"sacct -P -n -X -j {q} --format={SACCT_FORMAT} 2>/dev/null; true")
        shown, _, acct = done.stdout.partition("--\n")
        found = parse_scontrol_job(shown)
        return found if found is not None else parse_sacct(acct).get(job_id)

    async def submit(self, sub: Submission, *, test_only: bool = False) -> str:
        """Write each run root's node script and the batch script, then sbatch; returns the Slurm job id. The id
        is also written to the first root's `slurm_id`, where a dispatcher that died meanwhile finds it."""
        first = path_word(sub.roots[0][1])
        lines = ["set -e"]
        for _, root, script in sub.roots:
            rd = path_word(root)
            lines.append(f"rm -rf {rd} && mkdir -p {rd} && printf '%s' {shlex.quote(script)} > {rd}/node.sh")
        opts = " ".join(map(shlex.quote, sub.options))
        lines += [f"cd {first}", f"printf '%s' {shlex.quote(sub.batch)} > batch.sh"]
        if test_only:
            lines.append(f"sbatch --test-only {opts} batch.sh 2>&1")
            done = await self.run("\n".join(lines))
            return done.stdout.strip()
        lines += [f"sbatch --parsable {opts} batch.sh > slurm_id.tmp", "mv -f slurm_id.tmp slurm_id", "cat slurm_id"]
        done = await self.run("\n".join(lines))
        job_id = done.stdout.strip().split(";")[0]
        if not job_id.isdecimal():
            raise SlurmError(f"sbatch said {done.stdout.strip()!r}, not a job id")
        return job_id

    async def submitted(self, root: str) -> str | None:
        """The Slurm job id a submit wrote into `root`, if it got that far."""
        done = await self.run(f"cat {path_word(root)}/slurm_id 2>/dev/null; true")
        word = done.stdout.strip().split(";")[0]
        return word if word.isdecimal() else None

    async def control(self, verb: str, job_ids: list[str]) -> None:
        """scancel, or scontrol hold/release, of these jobs."""
        ids = " ".join(map(shlex.quote, job_ids))
        # uhold: a user's hold (JobHeldUser) even when ugro runs as an operator, whose `hold` is an admin's
        command = f"scancel {ids}" if verb == "cancel" else f"scontrol {'uhold' if verb == 'hold' else verb} {ids}"
        await self.run(command)

    async def exits(self, root: str, nodes: list[str]) -> dict[str, int | None]:
        """Each node's exit code from its `exit` file (None: not written)."""
        rd = path_word(root)
        script = "; ".join(f"printf '%s ' {shlex.quote(n)}; cat {rd}/{shlex.quote(n)}/exit 2>/dev/null || echo -"
                           for n in nodes)
        done = await self.run(script or "true")
        out: dict[str, int | None] = {}
        for line in done.stdout.splitlines():
            name, _, word = line.partition(" ")
            out[name] = int(word) if word.strip().lstrip("-").isdigit() else None
        return out
