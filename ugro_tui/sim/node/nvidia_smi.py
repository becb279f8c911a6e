"""Stand-in `nvidia-smi` answering `--query-gpu` / `--query-compute-apps` from the ugro GPU simulator."""

import sys

import ugro_gpusim

GPU_COLUMNS = {
    "index": lambda g: g["index"],
    "uuid": lambda g: g["uuid"],
    "name": lambda g: g["name"],
    "driver_version": lambda g: ugro_gpusim.DRIVER,
    "utilization.gpu": lambda g: g["util"],
    "memory.used": lambda g: g["mem_used"],
    "memory.total": lambda g: g["mem_total"],
    "temperature.gpu": lambda g: g["temp"],
    "power.draw": lambda g: "%.2f" % g["power"],
    "power.limit": lambda g: "%.2f" % g["power_limit"],
    "fan.speed": lambda g: "[N/A]" if g["fan"] is None else g["fan"],
}


def main(argv):
    source = ugro_gpusim.config().get("source", "nvml")
    if source == "mismatch":
        sys.stdout.write("Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 570.86\n")
        return 18
    if source == "none":
        sys.stdout.write("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                         "Make sure that the latest NVIDIA driver is installed and running.\n")
        return 9
    query = [a for a in argv if a.startswith("--query-")]
    if not query:
        sys.stderr.write("ugro stand-in nvidia-smi: only --query-gpu and --query-compute-apps are simulated\n")
        return 2
    kind, _, fields = query[0][len("--query-"):].partition("=")
    gpus = ugro_gpusim.snapshot()
    out = []
    if kind == "gpu":
        for g in gpus:
            out.append(", ".join(str(GPU_COLUMNS.get(f, lambda g: "[N/A]")(g)) for f in fields.split(",")))
    elif kind == "compute-apps":
        for g in gpus:
            for pid, mib in g["procs"]:
                row = {"gpu_uuid": g["uuid"], "pid": pid, "process_name": "python", "used_memory": mib}
                out.append(", ".join(str(row.get(f, "[N/A]")) for f in fields.split(",")))
    else:
        sys.stderr.write("unknown query %s\n" % kind)
        return 2
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
