"""A tiny DDP training run for ugro: gloo on CPU, nccl when CUDA is present.

It fits y = 3x - 1 + noise with a linear model and prints `step N loss X` on every rank. Every --save-every steps
it saves a checkpoint the way ugro expects: a folder `step-000120/` in $UGRO_CHECKPOINT_DIR (or --checkpoint-dir)
on every node, with `state.pt`, `.metadata` from rank 0, and a `.complete` marker written last. It resumes from
$UGRO_RESUME_FROM (or --resume-from), which ugro sets to the newest complete checkpoint when it runs a job again.
On TERM (a preemption: ugro gives $UGRO_PREEMPT_GRACE seconds) every rank agrees on the step, saves it and leaves,
so the job resumes where it stopped and redoes no step.
It is elastic (`ugro submit --nnodes 2:3`): when torchrun restarts its workers because a node went or joined, the
ranks agree on the newest complete checkpoint any of them has, the one that has it loads it and sends the weights
to the others, and training goes on with the new world size.
Run it with torchrun, e.g. through `ugro submit --nnodes 3 -- examples/train_tiny.py --steps 60`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step, to watch it live")
    parser.add_argument("--checkpoint-dir", default=os.environ.get("UGRO_CHECKPOINT_DIR"))
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--resume-from", default=os.environ.get("UGRO_RESUME_FROM") or None)
    parser.add_argument("--no-save-on-term", action="store_true", help="die on TERM as most scripts do (bench)")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    share = os.environ.get("UGRO_GPU_MEM_GB")  # --gpu-mem: this rank shares its card, so it keeps to its share
    if cuda and share:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, float(share) * 2**30 / total), device)
    torch.manual_seed(0)
    folder = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    net = torch.nn.Linear(1, 1).to(device)
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0  # torchrun re-formed the group
    start = resume(net, Path(args.resume_from) if args.resume_from else None, folder, restarted, rank, world)
    model = DDP(net, device_ids=[device.index] if cuda else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)  # plain SGD keeps no state beyond the weights
    gen = torch.Generator().manual_seed(1000 + rank)
    asked = torch.zeros(1)  # set by TERM; every rank learns it at the same step through the all_reduce below
    termed = []  # this rank got TERM itself (not only through the all_reduce)
    if not args.no_save_on_term:
        signal.signal(signal.SIGTERM, lambda *_: (asked.fill_(1.0), termed.append(1)))
    for step in range(start, args.steps):
        x = torch.randn(args.batch, 1, generator=gen).to(device)
        y = 3 * x - 1 + 0.01 * torch.randn(args.batch, 1, generator=gen).to(device)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.5f}", flush=True)
        stop = asked.clone()
        dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        preempted = bool(stop.item())
        if folder is not None and local_rank == 0 and (step % args.save_every == 0 or step == args.steps - 1
                                                       or preempted):
            save(folder / f"step-{step:06d}", {"model": model.module.state_dict(), "opt": opt.state_dict(),
                                               "step": step}, rank, world)
        if preempted:
            dist.barrier()  # every node's part is saved
            print(f"preempted: saved step {step}", flush=True)
            sys.stdout.flush()
            # A rank that only learnt of it (its node's agent is restarting the group for a node that joined
            # elsewhere) must not look finished: its agent would end, so it exits as failed and rejoins.
            os._exit(0 if termed else 1)
        if args.sleep:
            time.sleep(args.sleep)
    dist.barrier()
    if rank == 0:
        print(f"done: {world} ranks, final loss {loss.item():.5f}", flush=True)
    # Every rank is past the barrier and the checkpoint is saved. Leave without tearing gloo down: when a peer
    # exits first, gloo's teardown can abort ("terminate called without an active exception", SIGABRT), which
    # would fail a run that finished. Flush, then exit without running C++ destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def resume(net: torch.nn.Module, given: Path | None, folder: Path | None, restarted: bool, rank: int,
           world: int) -> int:
    """The step to start at. Every rank says the newest complete checkpoint it can read (the one ugro gave, or after
    an elastic restart the newest in the folder); the lowest rank holding the newest loads it and sends the
    weights to the others (a node that just joined may have none)."""
    path = given
    if path is None and restarted and folder is not None:
        done = sorted(p.parent for p in folder.glob("step-*/.complete"))
        path = done[-1] if done else None
    mine = int(torch.load(path / "state.pt")["step"]) if path is not None and (path / "state.pt").is_file() else -1
    best = torch.tensor([mine])
    dist.all_reduce(best, op=dist.ReduceOp.MAX)
    if best.item() < 0:
        return 0
    src = torch.tensor([rank if mine == best.item() else world])
    dist.all_reduce(src, op=dist.ReduceOp.MIN)
    if rank == src.item():
        net.load_state_dict(torch.load(path / "state.pt")["model"])
    for tensor in net.state_dict().values():
        dist.broadcast(tensor, int(src.item()))
    start = int(best.item()) + 1
    where = path if path is not None and mine == best.item() else f"step-{int(best.item()):06d} (rank {src.item()}'s)"
    print(f"resumed from {where} at step {start} with {world} ranks", flush=True)
    return start


def save(where: Path, state: dict, rank: int, world: int) -> None:
    """One node's part of a checkpoint; the marker last, so a checkpoint cut short is never taken as complete."""
    where.mkdir(parents=True, exist_ok=True)
    tmp = where / f"state.pt.{rank}.tmp"  # one per rank: nodes may share the folder
    torch.save(state, tmp)
    tmp.replace(where / "state.pt")
    if rank == 0:
        (where / ".metadata").write_text(f"step {state['step']} world {world}\n")
    (where / ".complete").touch()


if __name__ == "__main__":
    main()
