"""A tiny DDP training run for ugro: gloo on CPU, nccl when CUDA is present.

It fits y = 3x - 1 + noise with a linear model and prints `step N loss X` on every rank. Every --save-every steps
it saves a checkpoint the way ugro expects: a folder `step-000120/` in $UGRO_CHECKPOINT_DIR (or --checkpoint-dir)
on every node, with `state.pt`, `.metadata` from rank 0, and a `.complete` marker written last. It resumes from
$UGRO_RESUME_FROM (or --resume-from), which ugro sets to the newest complete checkpoint when it runs a job again.
On TERM (a preemption: ugro gives $UGRO_PREEMPT_GRACE seconds) every rank agrees on the step, saves it and leaves,
so the job resumes where it stopped and redoes no step.
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
    model = DDP(torch.nn.Linear(1, 1).to(device), device_ids=[device.index] if cuda else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    start = 0
    folder = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if args.resume_from:
        state = torch.load(Path(args.resume_from) / "state.pt", map_location=device)
        model.module.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"] + 1
        print(f"resumed from {args.resume_from} at step {start}", flush=True)
    gen = torch.Generator().manual_seed(1000 + rank)
    asked = torch.zeros(1)  # set by TERM; every rank learns it at the same step through the all_reduce below
    if not args.no_save_on_term:
        signal.signal(signal.SIGTERM, lambda *_: asked.fill_(1.0))
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
            os._exit(0)
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
