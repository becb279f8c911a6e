"""ugro's GPU sampler. It runs ON the node: stdlib only (plus pynvml when the node has it), Python 3.8+.

It prints one JSON line per interval: {"v", "t", "source", "driver", "error", "gpus": [...], "host": {...}}.
Host metrics come from hostinfo.py, whose code ugro sends ahead of this file as one script. GPU sources in order:
NVML through pynvml, then `nvidia-smi --query-*` CSV, then "none" with the reason. It exits when its stdin
closes (the SSH channel went away), so agents never pile up on a node.
"""

import csv
import io
import json
import os
import pwd
import subprocess
import sys
import threading
import time

from ugro_tui.core.telemetry.hostinfo import HostSampler  # package only: on a node, hostinfo.py's code is above

SCHEMA = 1
MISSING = ("", "n/a", "[n/a]", "[not supported]", "[unknown error]", "not supported", "unknown error")
GPU_FIELDS = ("index", "uuid", "name", "utilization.gpu", "memory.used", "memory.total", "temperature.gpu",
              "power.draw", "power.limit", "fan.speed")
APP_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")
HEADER_ALIASES = {"used_gpu_memory": "used_memory"}
MISMATCH_TEXT = "driver/library version mismatch"


def clean_value(raw):
    """A CSV cell as a number or text; any sentinel (N/A, [Not Supported], any [bracketed] text) is None."""
    value = raw.strip()
    if value.lower() in MISSING or (value.startswith("[") and value.endswith("]")):
        return None
    for unit in (" MiB", " %", " W", " C", " MHz"):
        if value.endswith(unit):
            value = value[: -len(unit)].strip()
            break
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else number


def _header_name(cell):
    name = cell.strip().split(" [", 1)[0].strip()
    return HEADER_ALIASES.get(name, name)


def parse_csv(text, fields):
    """Rows of `nvidia-smi --query-... --format=csv[,noheader][,nounits]` as dicts keyed by field name.

    With a header, columns are found by name (so a recording with extra fields parses too);
    without one, `fields` gives the order."""
    rows = [r for r in csv.reader(io.StringIO(text), skipinitialspace=True) if r and any(c.strip() for c in r)]
    if not rows:
        return []
    first = [_header_name(c) for c in rows[0]]
    if any(f in first for f in fields[:3]) and not first[0].strip().isdigit():
        names, body = first, rows[1:]
    else:
        names, body = list(fields), rows
    out = []
    for row in body:
        if len(row) > len(names):  # a process name with commas that csv could not keep whole
            extra = len(row) - len(names)
            at = names.index("process_name") if "process_name" in names else len(names) - 1
            row = row[:at] + [",".join(row[at:at + extra + 1])] + row[at + extra + 1:]
        out.append({n: clean_value(v) for n, v in zip(names, row)})
    return out


def gpus_from_smi(gpu_rows, app_rows, describe_pid):
    by_uuid = {}
    gpus = []
    for row in gpu_rows:
        gpu = {
            "index": row.get("index"),
            "uuid": row.get("uuid"),
            "name": row.get("name"),
            "utilization_pct": row.get("utilization.gpu"),
            "memory_used_mib": row.get("memory.used"),
            "memory_total_mib": row.get("memory.total"),
            "temperature_c": row.get("temperature.gpu"),
            "power_w": row.get("power.draw"),
            "power_limit_w": row.get("power.limit", row.get("enforced.power.limit")),
            "fan_pct": row.get("fan.speed"),
            "processes": [],
        }
        if gpu["index"] is None:
            gpu["index"] = len(gpus)
        by_uuid[gpu["uuid"]] = gpu
        gpus.append(gpu)
    for app in app_rows:
        gpu = by_uuid.get(app.get("gpu_uuid"))
        pid = app.get("pid")
        if gpu is None or not isinstance(pid, int):
            continue
        user, command = describe_pid(pid)
        gpu["processes"].append({"pid": pid, "user": user, "command": command or app.get("process_name"),
                                 "used_mib": app.get("used_memory"), "ugro_job": ugro_job_of(pid)})
    return gpus


def describe_pid(pid):
    """(user, command line) of a process on this node; None where /proc does not say."""
    user = command = None
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                    try:
                        user = pwd.getpwuid(uid).pw_name
                    except KeyError:
                        user = str(uid)
                    break
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip() or None
    except (OSError, ValueError):
        pass
    return user, command


def ugro_job_of(pid):
    """The ugro job a process belongs to ($UGRO_JOB_ID in its environment, readable for our own processes)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"UGRO_JOB_ID="):
                    return int(item[12:])
    except (OSError, ValueError):
        pass
    return None


class SmiSource:
    name = "nvidia-smi"

    def __init__(self):
        self.driver = None

    def _run(self, query, fields):
        proc = subprocess.run(["nvidia-smi", "--query-%s=%s" % (query, ",".join(fields)),
                               "--format=csv,noheader,nounits"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=10)
        text = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise SourceError(text.strip().splitlines()[0] if text.strip() else "nvidia-smi exit %d" % proc.returncode,
                              MISMATCH_TEXT in text.lower())
        return text

    def sample(self):
        if self.driver is None:
            rows = parse_csv(self._run("gpu", ("driver_version",)), ("driver_version",))
            self.driver = str(rows[0]["driver_version"]) if rows else None
        gpus = parse_csv(self._run("gpu", GPU_FIELDS), GPU_FIELDS)
        apps = parse_csv(self._run("compute-apps", APP_FIELDS), APP_FIELDS)
        return gpus_from_smi(gpus, apps, describe_pid)


class SourceError(Exception):
    def __init__(self, reason, mismatch=False):
        Exception.__init__(self, reason)
        self.mismatch = mismatch


class NvmlSource:
    name = "nvml"

    def __init__(self, pynvml):
        self.nv = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            mismatch = getattr(exc, "value", None) == getattr(pynvml, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", 18)
            raise SourceError("NVML: %s" % _text(exc), mismatch) from None
        self.driver = _text(self._get(pynvml.nvmlSystemGetDriverVersion))

    def _get(self, fn, *args):
        try:
            return fn(*args)
        except self.nv.NVMLError:
            return None

    def _energy(self, h):
        """mJ since the driver loaded (Volta and newer); None where the GPU or the library has no counter."""
        getter = getattr(self.nv, "nvmlDeviceGetTotalEnergyConsumption", None)
        return self._get(getter, h) if getter is not None else None

    def sample(self):
        nv = self.nv
        gpus = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            util = self._get(nv.nvmlDeviceGetUtilizationRates, h)
            mem = self._get(nv.nvmlDeviceGetMemoryInfo, h)
            power = self._get(nv.nvmlDeviceGetPowerUsage, h)
            limit = self._get(nv.nvmlDeviceGetEnforcedPowerLimit, h)
            procs = []
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                for p in self._get(getattr(nv, getter), h) or []:
                    if any(q["pid"] == p.pid for q in procs):
                        continue
                    user, command = describe_pid(p.pid)
                    used = getattr(p, "usedGpuMemory", None)
                    procs.append({"pid": p.pid, "user": user, "command": command,
                                  "used_mib": used // (1024 * 1024) if isinstance(used, int) else None,
                                  "ugro_job": ugro_job_of(p.pid)})
            gpus.append({
                "index": i,
                "uuid": _text(self._get(nv.nvmlDeviceGetUUID, h)),
                "name": _text(self._get(nv.nvmlDeviceGetName, h)),
                "utilization_pct": util.gpu if util is not None else None,
                "memory_used_mib": mem.used // (1024 * 1024) if mem is not None else None,
                "memory_total_mib": mem.total // (1024 * 1024) if mem is not None else None,
                "temperature_c": self._get(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
                "power_w": round(power / 1000.0, 2) if power is not None else None,
                "power_limit_w": round(limit / 1000.0, 2) if limit is not None else None,
                "fan_pct": self._get(nv.nvmlDeviceGetFanSpeed, h),
                "energy_mj": self._energy(h),
                "processes": procs,
            })
        return gpus


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def open_source():
    """(source, error): the first source that works, or None with the reason none did."""
    reasons = []
    try:
        import pynvml
    except Exception as exc:  # not installed, or broken: fall through to nvidia-smi
        reasons.append("pynvml: %s" % exc)
    else:
        try:
            return NvmlSource(pynvml), None
        except SourceError as exc:
            if exc.mismatch:
                return None, "driver/library version mismatch (%s); reboot or reload the nvidia module" % exc
            reasons.append(str(exc))
    smi = SmiSource()
    try:
        smi.sample()
        return smi, None
    except FileNotFoundError:
        reasons.append("nvidia-smi: not found")
    except SourceError as exc:
        if exc.mismatch:
            return None, "driver/library version mismatch (%s); reboot or reload the nvidia module" % exc
        reasons.append("nvidia-smi: %s" % exc)
    except (OSError, subprocess.SubprocessError) as exc:
        reasons.append("nvidia-smi: %s" % exc)
    return None, "no GPU driver (" + "; ".join(reasons) + ")"


def _exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    os._exit(0)


def _host_sampler(workdir):
    try:
        return HostSampler(workdir)
    except Exception:
        return None


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    interval = float(args[args.index("--interval") + 1]) if "--interval" in args else 1.0
    workdir = args[args.index("--workdir") + 1] if "--workdir" in args else "~"
    once = "--once" in args  # one sample, then exit: "test connection" in the node editor
    if not once:
        threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    host = None if "--no-host" in args else _host_sampler(workdir)
    started = time.time()
    source, error = open_source()
    if host is not None and time.time() - started < 0.2:  # CPU % of the first sample needs a span to measure
        time.sleep(0.2 - (time.time() - started))
    retry_at = time.time() + 10
    while True:
        now = time.time()
        gpus = []
        if source is None and now >= retry_at:
            source, error = open_source()
            retry_at = now + 10
        if source is not None:
            try:
                gpus = source.sample()
                error = None
            except Exception as exc:  # a failing driver is data for the user, not a reason to die
                error = "%s: %s" % (source.name, exc)
        line = {"v": SCHEMA, "t": round(now, 3), "source": source.name if source else "none",
                "driver": getattr(source, "driver", None), "error": error, "gpus": gpus}
        if host is not None:
            try:
                line["host"] = host.sample()
            except Exception as exc:  # host numbers are extra: their failure never costs the GPU sample
                line["host"] = None
                line["host_error"] = str(exc)
        try:
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            os._exit(0)
        if once:
            return
        # Sample on interval boundaries so every node's sample for one tick arrives together.
        time.sleep(interval - (time.time() % interval))


if __name__ == "__main__":
    main()
