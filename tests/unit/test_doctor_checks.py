"""The doctor's rules on recorded-shape facts: versions across nodes, names, clock, disk, a refused rendezvous."""

from __future__ import annotations

from ugro_tui.core.doctor.checks import GIB, NodeFacts, Status, cluster_checks, node_checks


def facts(torch="2.13.0+cu128", cuda="12.8", nccl="2.27.3", gpus=1, hostname="gpu-master",
          resolve=None, free=100 * GIB, ifname=None) -> dict:
    return {
        "python": {"version": "3.11.9", "executable": "/opt/env/bin/python"},
        "hostname": hostname,
        "torch": {"version": torch, "cuda": cuda, "cuda_available": True, "gpu_count": gpus, "nccl": nccl,
                  "distributed": True, "run_module": True},
        "torchrun": {"path": "/opt/env/bin/torchrun", "beside_python": "/opt/env/bin/torchrun"},
        "driver": {"driver": "570.86", "gpus": gpus, "source": "nvml"},
        "disk": {"path": "/home/ob/ugro", "exists": True, "checked": "/home/ob/ugro", "free": free, "writable": True},
        "interface": ifname,
        "resolve": resolve or {"gpu-master": ["127.0.0.2"], "gpu1": ["127.0.0.3"]},
    }


def node(name: str, offset: float = 0.0, rendezvous=None, **kw) -> NodeFacts:
    return NodeFacts(name, name, rtt_s=0.01, facts=facts(hostname=name, **kw), clock_offset_s=offset,
                     rendezvous=rendezvous or {"ok": True, "ms": 0.4, "target": "gpu-master:29500"})


def statuses(checks) -> dict[str, Status]:
    return {c.name: c.status for c in checks}


def test_matching_nodes_are_ok() -> None:
    got = statuses(cluster_checks([node("gpu-master"), node("gpu1")]))
    assert got == {"torch versions": Status.OK, "CUDA versions": Status.OK, "NCCL versions": Status.OK,
                   "gpu counts": Status.OK, "hostnames": Status.OK}


def test_nccl_and_torch_mismatch_fail_cuda_mismatch_warns() -> None:
    checks = cluster_checks([node("gpu-master"), node("gpu1", torch="2.5.1+cu121", cuda="12.1", nccl="2.20.5")])
    got = {c.name: c for c in checks}
    assert got["torch versions"].status is Status.FAIL
    assert got["NCCL versions"].status is Status.FAIL
    assert got["NCCL versions"].detail == "2.27.3 on gpu-master; 2.20.5 on gpu1"
    assert got["CUDA versions"].status is Status.WARN


def test_uneven_gpu_counts_warn_with_the_usable_width() -> None:
    [counts] = [c for c in cluster_checks([node("gpu-master", gpus=1), node("gpu1", gpus=2)])
                if c.name == "gpu counts"]
    assert counts.status is Status.WARN and "at most 1 per node" in counts.hint


def test_a_name_that_resolves_differently_on_its_own_node_warns() -> None:
    # Loopback addresses stand in for LAN ones here (tests never name another network): gpu-master means
    # 127.0.1.1 to itself (the /etc/hosts trap) and 127.0.0.2 to gpu1.
    master = node("gpu-master", resolve={"gpu-master": ["127.0.1.1"], "gpu1": ["127.0.0.3"]})
    worker = node("gpu1", resolve={"gpu-master": ["127.0.0.2"], "gpu1": ["127.0.0.3"]})
    [names] = [c for c in cluster_checks([master, worker]) if c.name == "hostnames"]
    assert names.status is Status.WARN
    assert "127.0.1.1 on gpu-master" in names.detail and "127.0.0.2 on gpu1" in names.detail


def test_clock_disk_interface_and_refused_rendezvous() -> None:
    master = node("gpu-master", offset=0.0)
    late = node("gpu1", offset=3.0, free=2 * GIB, ifname={"exists": False, "have": ["eth0", "lo"]},
                rendezvous={"ok": False, "error": "ConnectionRefusedError: [Errno 111] Connection refused",
                            "target": "gpu-master:29500"})
    got = {c.name: c for c in node_checks(late, master, "python3")}
    assert got["clock"].status is Status.WARN and got["clock"].detail.startswith("+3000 ms")
    assert got["disk"].status is Status.WARN
    assert got["interface"].status is Status.FAIL and "eth0" in got["interface"].detail
    assert got["rendezvous"].status is Status.FAIL and "refused" in got["rendezvous"].detail
    assert "firewall" in got["rendezvous"].hint


def test_no_torch_fails_and_skips_torchrun() -> None:
    broken = node("gpu1")
    broken.facts["torch"] = {"error": "ModuleNotFoundError: No module named 'torch'"}
    got = {c.name: c for c in node_checks(broken, node("gpu-master"), "python3")}
    assert got["torch"].status is Status.FAIL and "No module named" in got["torch"].detail
    assert got["torchrun"].status is Status.SKIP


def test_a_python_that_does_not_start_names_the_setting() -> None:
    f = NodeFacts("gpu1", "gpu1", probe_error="the node's python failed: sh: 1: /opt/nope/python: not found")
    [check] = node_checks(f, node("gpu-master"), "/opt/nope/python")
    assert check.status is Status.FAIL and '/opt/nope/python' in check.hint


def test_a_saturated_cpu_beside_idle_gpus_of_a_running_job_warns() -> None:
    from collections import deque

    from ugro_tui.core.doctor.starving import starving_checks
    from ugro_tui.core.jobs.model import Job, JobSpec, JobState
    from ugro_tui.core.telemetry.model import ClusterState

    state = ClusterState([("gpu1", "gpu1"), ("gpu2", "gpu2")])
    for name, cpu, util in (("gpu1", 97.0, 12.0), ("gpu2", 97.0, 95.0)):
        node = state.nodes[name]
        for t in range(12):
            node.apply_sample({"t": t, "gpus": [{"index": 0, "utilization_pct": util}],
                               "host": {"cpu_pct": cpu, "cores": 8}}, float(t))
    job = Job(4, JobSpec("train", ("t.py",), nnodes=2), JobState.RUNNING, placement=(("gpu1", (0,)), ("gpu2", (0,))))
    [warn] = starving_checks(state, [job])
    assert (warn.node, warn.name, str(warn.status)) == ("gpu1", "cpu", "warn")
    assert "CPU 97% of 8 cores while job 4 (train)'s GPUs here average 12%" in warn.detail
    assert "num_workers" in warn.hint
    # Not while the job is queued, nor with a busy GPU, nor with one busy second among idle ones.
    import dataclasses

    assert starving_checks(state, [dataclasses.replace(job, state=JobState.QUEUED)]) == []
    state.nodes["gpu1"].cpu_history = deque([20.0] * 9 + [100.0])
    assert starving_checks(state, [job]) == []
