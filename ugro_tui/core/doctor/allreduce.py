"""ugro doctor's smoke run: one all-reduce across every node, launched by torchrun like any ugro job.

Rank 0 prints one `UGRO_SMOKE {json}` line: the backend, when the group was ready, the bus bandwidth
(as nccl-tests counts it) and whether the sum was right."""

import json
import os
import sys
import time

import torch
import torch.distributed as dist


def main():
    use_nccl = torch.cuda.is_available() and dist.is_nccl_available()
    backend = "nccl" if use_nccl else "gloo"
    if use_nccl:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    dist.barrier()
    ready = time.time()
    world, rank = dist.get_world_size(), dist.get_rank()
    device = "cuda" if use_nccl else "cpu"
    mib = int(os.environ.get("UGRO_SMOKE_MIB", "16"))
    x = torch.ones(mib * (1 << 20) // 4, device=device)
    dist.all_reduce(x)
    correct = bool((x == world).all().item())
    iters = int(os.environ.get("UGRO_SMOKE_ITERS", "5"))
    if use_nccl:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(x)
    if use_nccl:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / iters
    algbw = x.numel() * 4 / seconds
    busbw = algbw * 2 * (world - 1) / world if world > 1 else algbw
    flags = torch.tensor([1 if correct else 0], device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    if rank == 0:
        print("UGRO_SMOKE " + json.dumps({
            "backend": backend, "world": world, "ready": ready, "mib": mib, "seconds": seconds,
            "busbw_gbps": busbw / 1e9, "correct": bool(flags.item()),
        }), flush=True)
    dist.barrier()
    sys.stdout.flush()
    os._exit(0 if flags.item() else 1)  # skip the process-group teardown, which can abort a finished run


if __name__ == "__main__":
    main()
