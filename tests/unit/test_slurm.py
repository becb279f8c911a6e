"""The Slurm backend's pure parts: Slurm's outputs parsed (recorded from Slurm 22.05 here), the sbatch options and
scripts a job becomes (every value quoted), and the [slurm] table's checks."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from ugro_tui.core.backends.slurm.script import node_script, options, submission
from ugro_tui.core.backends.slurm.states import (
    gres_count,
    hostnames,
    parse_sacct,
    parse_scontrol_job,
    parse_sinfo,
    parse_squeue,
    task_ids,
    wait_status,
)
from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.errors import ConfigError

from ..conftest import FIXTURES, cluster_from

SLURM = FIXTURES / "slurm"
BASE = """
[cluster]
backend = "slurm"
rendezvous_ports = [29500, 29507]
[[nodes]]
name = "login"
host = "127.0.0.1"
workdir = "~/ugro"
python = "/opt/venv/bin/python"
[slurm]
login = "login"
"""


def test_squeue_json_with_a_pending_array_a_dependency_and_a_hold() -> None:
    jobs = parse_squeue((SLURM / "squeue-pending.json").read_text())
    assert jobs["1"].state == "RUNNING" and hostnames(jobs["1"].nodes) == ["n1", "n2"]
    assert [k for k in jobs if k.startswith("2_")] == ["2_1", "2_2", "2_3", "2_4"]  # "1-4%1": one each
    assert jobs["2_3"].ugro_state is JobState.QUEUED and "busy" in jobs["2_3"].said and "Resources" in jobs["2_3"].said
    assert jobs["3"].reason == "Dependency" and jobs["4"].ugro_state is JobState.HELD


def test_squeue_json_after_some_ended_exit_codes_are_wait_statuses() -> None:
    jobs = parse_squeue((SLURM / "squeue-ended.json").read_text())
    assert (jobs["5"].state, jobs["5"].exit_code, jobs["5"].ugro_state) == ("FAILED", 3, JobState.FAILED)
    assert (jobs["1"].ugro_state, jobs["1"].signal) == (JobState.CANCELLED, 15)
    assert jobs["2_1"].state == "RUNNING" and jobs["2_2"].reason == "JobArrayTaskLimit"  # a task started: its own
    assert set(k for k in jobs if k.startswith("2_")) == {"2_1", "2_2", "2_3", "2_4"}
    assert jobs["3"].reason == "DependencyNeverSatisfied"


def test_scontrol_sacct_and_small_parsers() -> None:
    line = ("JobId=7 ArrayJobId=6 ArrayTaskId=2 JobName=ugro-3-a1 JobState=TIMEOUT Reason=TimeLimit "
            "ExitCode=0:15 Partition=gpu NodeList=n[1-2]")
    job = parse_scontrol_job(line)
    assert job is not None and (job.job_id, job.state, job.signal, job.partition) == ("6_2", "TIMEOUT", 15, "gpu")
    assert job.ugro_state is JobState.FAILED and job.said == "Slurm says TIMEOUT (TimeLimit)"
    assert parse_scontrol_job("slurm_load_jobs error: Invalid job id specified") is None
    acct = parse_sacct("12|CANCELLED by 0|0:15|None|n1|gpu\n13_2|COMPLETED|0:0|None|n[1-2]|gpu\n")
    assert acct["12"].ugro_state is JobState.CANCELLED and acct["13_2"].ugro_state is JobState.SUCCEEDED
    assert wait_status(768) == (3, None) and wait_status(9) == (0, 9) and wait_status(None) == (None, None)
    assert task_ids("2-4%1") == [2, 3, 4] and task_ids("1,5-9:2") == [1, 5, 7, 9]
    assert hostnames("gpu[01-03,7],login-a") == ["gpu01", "gpu02", "gpu03", "gpu7", "login-a"]
    assert gres_count("gpu:a100:4(S:0-1),gpu:2") == 6 and gres_count("gpu:(null):1(IDX:0)") == 1
    assert gres_count("") == 0


def test_sinfo_json_gives_each_nodes_gpus_and_allocation() -> None:
    nodes = {n.name: n for n in parse_sinfo((SLURM / "sinfo-busy.json").read_text())}
    assert set(nodes) == {"n1", "n2"}
    assert (nodes["n1"].gpus, nodes["n1"].gpus_used, nodes["n1"].state) == (2, 2, "mixed")
    assert nodes["n1"].partitions == ("gpu",)


def job(**spec) -> Job:
    fields = {"name": "t", "command": ("train.py", "--tag", "it's $HOME; rm -rf /"), "nnodes": 2} | spec
    return Job(5, JobSpec(**fields), attempt=1)


def test_options_map_the_spec_and_the_slurm_table() -> None:
    cluster = cluster_from(BASE + 'partition = "a100"\naccount = "lab"\nqos = "normal"\ntime = "2:00:00"\n'
                           'extra = ["--constraint=ib"]\n')
    opts = options(job(gpus_per_node=2, priority=-7), cluster, after=("41", "42_3"))
    assert opts[:4] == ["--job-name=ugro-5-a1", "--nodes=2", "--ntasks-per-node=1", "--output=batch.log"]
    for want in ("--gpus-per-node=2", "--partition=a100", "--account=lab", "--qos=normal", "--time=2:00:00",
                 "--nice=7", "--dependency=afterok:41:42_3", "--constraint=ib"):
        assert want in opts
    assert not any(o.startswith("--nice") for o in options(job(priority=5), cluster))  # a user may only lower it
    assert not any(o.startswith("--gpus") for o in options(job(gpus_per_node=0), cluster))


def test_every_value_in_the_node_script_is_quoted() -> None:
    cluster = cluster_from(BASE)
    script = node_script(job(env=(("TAG", "a b'c"),)), cluster)
    line = next(x for x in script.splitlines() if "torch.distributed.run" in x)
    words = shlex.split(line.replace('"$UGRO_RDZV"', "R").replace('"$rd/torchrun"', "D").rstrip(" &"))
    assert words[-3:] == ["train.py", "--tag", "it's $HOME; rm -rf /"]  # one word each, never run as shell
    assert words[:3] == ["/opt/venv/bin/python", "-m", "torch.distributed.run"]
    assert "export TAG='a b'\"'\"'c'" in script
    assert 'rd="$HOME"/ugro/runs/job-5-a1/"$SLURMD_NODENAME"' in script


def test_a_sweep_is_one_array_whose_index_picks_the_trial() -> None:
    cluster = cluster_from(BASE)
    trials = [Job(i, JobSpec(name="lr", command=("t.py",), sweep_id="abc"), attempt=1) for i in (3, 4, 5)]
    sub = submission(trials, cluster, max_concurrent=2)
    assert "--array=1-3%2" in sub.options and "--job-name=ugro-sweep-abc" in sub.options
    assert "--output=batch-%a.log" in sub.options
    assert '2) root="$HOME"/ugro/runs/job-4-a1;;' in sub.batch
    assert [r[0] for r in sub.roots] == [3, 4, 5]
    assert sub.preview().startswith("sbatch --job-name=ugro-sweep-abc")
    # Two trials running at once on one node get two rendezvous ports (each task of an array has its own job id;
    # the array's id, which they share, once put both torchruns on one c10d store).
    lines = [line for line in sub.batch.splitlines() if line.startswith(("head=", "addr=", "export UGRO_RDZV="))]
    script = "scontrol() { echo n1; }\n" + "\n".join(lines) + '\necho "$UGRO_RDZV"\n'
    ports = {subprocess.run(["sh", "-c", script], env={"SLURM_JOB_NODELIST": "n1", "SLURM_ARRAY_JOB_ID": "40",
                                                       "SLURM_JOB_ID": str(task_id), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=True).stdout.strip() for task_id in (41, 42)}
    assert len(ports) == 2, ports


@pytest.mark.parametrize(("extra", "field", "problem"), [
    ('login = "nope"\n', "slurm.login", 'no [[nodes]] entry is named "nope"'),
    ('partition = "gpu; rm -rf /"\n', "slurm.partition", "expected a Slurm name"),
    ('time = "two hours"\n', "slurm.time", "expected a Slurm time limit"),
    ('extra = ["--array=1-9"]\n', "slurm.extra", "--array is set by ugro per job"),
    ('extra = ["-N 2"]\n', "slurm.extra", "expected an array of sbatch options"),
    ('follow = "ssh"\n', "slurm.follow", "expected one of login, node"),
])
def test_bad_slurm_tables_name_the_field(extra: str, field: str, problem: str) -> None:
    text = BASE.replace('login = "login"\n', "") if extra.startswith("login") else BASE
    with pytest.raises(ConfigError) as caught:
        cluster_from(text + extra)
    assert caught.value.field == field and problem in caught.value.problem


def test_backend_slurm_needs_a_slurm_table() -> None:
    with pytest.raises(ConfigError) as caught:
        cluster_from(BASE.split("[slurm]")[0])
    assert caught.value.field == "cluster.backend" and "[slurm]" in caught.value.problem
