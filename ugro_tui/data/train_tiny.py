"""A tiny DDP training run for ugro: gloo on CPU, nccl when CUDA is present.

It fits y = 3x - 1 + noise with a linear model, prints `step N loss X` on every rank, and saves a checkpoint
every --save-every steps to $UGRO_CHECKPOINT_DIR (or --checkpoint-dir); started again, it resumes from there.
Run it with torchrun, e.g. through `ugro submit --nnodes 3 -- examples/train_tiny.py --steps 60`.
"""

from __future__ import annotations

import argparse
import os
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
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    torch.manual_seed(0)
    model = DDP(torch.nn.Linear(1, 1).to(device), device_ids=[device.index] if cuda else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    start = 0
    ckpt = Path(args.checkpoint_dir) / "train_tiny.pt" if args.checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device)
        model.module.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"] + 1
        print(f"resumed from {ckpt} at step {start}", flush=True)
    gen = torch.Generator().manual_seed(1000 + rank)
    for step in range(start, args.steps):
        x = torch.randn(args.batch, 1, generator=gen).to(device)
        y = 3 * x - 1 + 0.01 * torch.randn(args.batch, 1, generator=gen).to(device)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.5f}", flush=True)
        if ckpt is not None and rank == 0 and (step % args.save_every == 0 or step == args.steps - 1):
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.module.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
            tmp.replace(ckpt)
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


if __name__ == "__main__":
    main()
