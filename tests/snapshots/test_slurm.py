"""Snapshots of the app on a Slurm cluster: the Nodes view from sinfo (allocation only) and the launch form's
preview of the sbatch the login node would run."""

from __future__ import annotations

from ugro_tui.core.backends.slurm.nodes import apply_nodes
from ugro_tui.core.backends.slurm.states import SlurmNode
from ugro_tui.core.telemetry.model import ClusterState
from ugro_tui.ui.app import make_app

from ..conftest import cluster_from
from ..ui_states import NOW, press_then

SLURM = cluster_from("""
[cluster]
name = "uni-cluster"
backend = "slurm"
[[nodes]]
name = "login"
host = "127.0.0.2"
user = "ob"
workdir = "~/ugro"
[slurm]
login = "login"
partition = "gpu"
time = "2:00:00"
""")
NODES = [SlurmNode("a100-01", "mixed", "127.0.0.1", 4, 3, ("gpu",)),
         SlurmNode("a100-02", "allocated", "127.0.0.1", 4, 4, ("gpu", "long")),
         SlurmNode("a100-03", "idle", "127.0.0.1", 4, 0, ("gpu",)),
         SlurmNode("a100-04", "down+drain", "127.0.0.1", 4, 0, ("gpu",), "Not responding")]


def slurm_state() -> ClusterState:
    state = ClusterState([(n.name, n.address) for n in SLURM.nodes], history=60)
    state.nodes["login"].apply_sample({"t": NOW - 1, "source": "none", "gpus": [],
                                       "error": "no GPU driver (NVML: Driver Not Loaded; nvidia-smi: not found)"},
                                      NOW - 1)
    apply_nodes(state, NODES, "login", NOW - 2, {"login"})
    return state


def app():
    return make_app(SLURM, monitor=False, clock=lambda: NOW, state=slurm_state())


def test_slurm_nodes_with_their_gpu_allocation_80x24(snap_compare) -> None:
    assert snap_compare(app(), terminal_size=(80, 24))


def test_the_launch_form_previews_the_sbatch_script(snap_compare) -> None:
    keys = ["n", *"train.py", "tab", *"--lr 3e-4", "tab", "backspace", "2"]
    assert snap_compare(app(), terminal_size=(140, 44), run_before=press_then(keys))
