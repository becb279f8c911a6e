"""GPU models the simulator knows by name: (marketing name, memory MiB, power limit W)."""

from __future__ import annotations

MODELS: dict[str, tuple[str, int, float]] = {
    "rtx 5070 ti": ("NVIDIA GeForce RTX 5070 Ti", 12227, 300.0),
    "rtx 4070": ("NVIDIA GeForce RTX 4070", 8188, 200.0),
    "rtx 3070 ti": ("NVIDIA GeForce RTX 3070 Ti", 8192, 290.0),
    "rtx 4090": ("NVIDIA GeForce RTX 4090", 24564, 450.0),
    "rtx 3090": ("NVIDIA GeForce RTX 3090", 24576, 350.0),
    "a100 40gb": ("NVIDIA A100-SXM4-40GB", 40960, 400.0),
    "h100": ("NVIDIA H100 80GB HBM3", 81559, 700.0),
    "t4": ("Tesla T4", 15360, 70.0),
}


def lookup_gpu(model: str) -> tuple[str, int, float] | None:
    key = model.lower().replace("nvidia", "").replace("geforce", "").strip()
    return MODELS.get(" ".join(key.split()))
