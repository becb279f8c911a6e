"""A real Slurm 22.05 on this one machine: munged, slurmctld and one `slurmd -N` per node, all on loopback.

Used by the tests, the demo and the benchmarks. Every state, pid, log and socket path is in the lab's own folder, so
each lab starts from empty (old state would bring old job ids back). The GPUs are fake: gres files that are links to
/dev/null, which is enough for Slurm to count them and to set CUDA_VISIBLE_DEVICES in the jobs, as on a real cluster.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ugro_tui.sim.loopback import free_port

PROGRAMS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
APT = "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"


def missing() -> str | None:
    """Why a Slurm lab cannot start here, or None."""
    if os.geteuid() != 0:
        return "the Slurm lab runs its daemons as root"
    lacking = [p for p in PROGRAMS if shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists()]
    return f"Slurm is not installed ({', '.join(lacking)} missing): {APT}" if lacking else None


def _program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class SlurmLab:
    """Start with `start()`, stop with `stop()`; the client commands need `env()` (SLURM_CONF)."""

    folder: Path
    nodes: tuple[str, ...] = ("n1", "n2")
    gpus: int = 2
    cpus: int = 4
    partition: str = "gpu"
    pids: list[int] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.folder / "etc" / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def profile_line(self) -> str:
        """What a login shell on the 'login node' needs to find this Slurm (the SSH lab's nodes source it)."""
        return f"export SLURM_CONF={self.conf}"

    def _write_config(self) -> None:
        f = self.folder
        for sub in ("etc", "state", "spool", "log", "run", "munge/etc", "munge/run", "munge/lib", "dev"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        (f / "munge" / "etc").chmod(0o700)
        (f / "munge" / "lib").chmod(0o700)
        (f / "munge" / "run").chmod(0o755)
        key = f / "munge" / "etc" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        host = socket.gethostname()
        ctl_port, ports = free_port("127.0.0.1"), [free_port("127.0.0.1") for _ in self.nodes]
        gres = []
        for node in self.nodes:
            for i in range(self.gpus):
                dev = f / "dev" / f"{node}-gpu{i}"
                if not dev.exists():
                    dev.symlink_to("/dev/null")
            gres.append(f"NodeName={node} Name=gpu File={f}/dev/{node}-gpu[0-{self.gpus - 1}]")
        (f / "etc" / "gres.conf").write_text("AutoDetect=off\n" + "\n".join(gres) + "\n")
        lines = [
            "ClusterName=ugrolab", "SlurmctldHost=localhost(127.0.0.1)", f"SlurmctldPort={ctl_port}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={f}/munge/run/munge.socket",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none", "MinJobAge=600", "ReturnToService=2",
            "SlurmdParameters=config_overrides",  # the configured CPUs, whatever this machine has
            "SchedulerType=sched/backfill", "SchedulerParameters=sched_interval=1",
            "MaxArraySize=1001", "GresTypes=gpu", "SlurmdTimeout=30", "InactiveLimit=0", "KillWait=5",
            f"StateSaveLocation={f}/state", f"SlurmdSpoolDir={f}/spool/%n", f"SlurmctldPidFile={f}/run/slurmctld.pid",
            f"SlurmdPidFile={f}/run/slurmd-%n.pid", f"SlurmctldLogFile={f}/log/slurmctld.log",
            f"SlurmdLogFile={f}/log/slurmd-%n.log", "SlurmctldDebug=info", "SlurmdDebug=info",
            f"NodeName={','.join(self.nodes) if len(self.nodes) == 1 else self._range()} NodeHostname={host} "
            f"NodeAddr=127.0.0.1 Port=[{','.join(map(str, ports))}] CPUs={self.cpus} RealMemory=1000 "
            f"Gres=gpu:{self.gpus} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _range(self) -> str:
        return ",".join(self.nodes)

    def start(self, timeout: float = 30.0, tries: int = 3) -> SlurmLab:
        """Start the daemons; a try that fails (a port taken between picking and binding it, say) is stopped and
        made again in a fresh folder with fresh ports. Raises with every try's reason."""
        why = missing()
        if why:
            raise RuntimeError(why)
        base, reasons = self.folder, []
        for attempt in range(tries):
            self.folder = base / f"try{attempt}" if attempt else base
            try:
                return self._start_once(timeout)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                reasons.append(str(exc))
                self.stop()
        raise RuntimeError("the Slurm lab did not start: " + " / ".join(reasons))

    def _start_once(self, timeout: float) -> SlurmLab:
        self._write_config()
        f, env = self.folder, self.env()
        munged = subprocess.run([_program("munged"), "--key-file", f"{f}/munge/etc/munge.key", "--socket",
                                 f"{f}/munge/run/munge.socket", "--pid-file", f"{f}/munge/run/munged.pid",
                                 "--log-file", f"{f}/munge/munged.log", "--seed-file", f"{f}/munge/lib/seed",
                                 "--force"], capture_output=True, text=True, timeout=timeout)
        if munged.returncode != 0:
            raise RuntimeError(f"munged did not start: {munged.stderr.strip()}")
        self._pid_from(f / "munge" / "run" / "munged.pid", timeout)
        ctl = subprocess.run([_program("slurmctld"), "-i"], env=env, capture_output=True, text=True, timeout=timeout)
        if ctl.returncode != 0:
            raise RuntimeError(f"slurmctld did not start: {ctl.stderr.strip()} {self._log_tail('slurmctld.log')}")
        self._pid_from(f / "run" / "slurmctld.pid", timeout)
        for node in self.nodes:
            (f / "spool" / node).mkdir(parents=True, exist_ok=True)
            done = subprocess.run([_program("slurmd"), "-N", node], env=env, capture_output=True, text=True,
                                  timeout=timeout)
            if done.returncode != 0:
                raise RuntimeError(f"slurmd -N {node} did not start: {done.stderr.strip()} "
                                   f"{self._log_tail(f'slurmd-{node}.log')}")
            self._pid_from(f / "run" / f"slurmd-{node}.pid", timeout)
        self.wait_idle(timeout)
        return self

    def _log_tail(self, name: str) -> str:
        try:
            return "| " + " | ".join((self.folder / "log" / name).read_text().splitlines()[-5:])
        except OSError:
            return ""

    def _pid_from(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The daemon creates the file, then writes its pid: read in between, it is empty (IndexError).
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.pids.append(int(path.read_text().split()[0]))
                return
            time.sleep(0.05)
        raise RuntimeError(f"no pid in {path} after {timeout}s")

    def wait_idle(self, timeout: float) -> None:
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            done = subprocess.run([_program("sinfo"), "-h", "-N", "-o", "%N %t"], env=self.env(),
                                  capture_output=True, text=True, timeout=timeout)
            last = (done.stdout + done.stderr).strip()
            states = dict(line.split() for line in done.stdout.splitlines() if len(line.split()) == 2)
            if done.returncode == 0 and all(states.get(n) == "idle" for n in self.nodes):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Slurm nodes are not idle after {timeout}s: {last} {self._log_tail('slurmctld.log')}")

    def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_program(argv[0]), *argv[1:]], env=self.env(), capture_output=True, text=True,
                              timeout=timeout)

    def cancel_all(self, timeout: float = 15.0) -> None:
        """scancel every job, and wait until the queue is empty (their processes are gone with them)."""
        self.run("scancel", "--full", "--user", getpass.getuser(), timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.run("squeue", "-h", "-t", "PD,R,CG,CF,S", "-o", "%i", timeout=timeout).stdout.split()
            if not left:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):  # it goes on to kill the daemons anyway
            self.cancel_all(timeout=10)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.run("scontrol", "shutdown", timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in self.pids):
            time.sleep(0.1)
        for pid in self.pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
