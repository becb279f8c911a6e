"""Stand-in for NVIDIA's `pynvml` (nvidia-ml-py), answering from the ugro GPU simulator. Data source only."""

import ugro_gpusim

NVML_TEMPERATURE_GPU = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
_MESSAGES = {
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
}


class NVMLError(Exception):
    def __init__(self, value):
        Exception.__init__(self, value)
        self.value = value

    def __str__(self):
        return _MESSAGES.get(self.value, "Unknown Error")


class NVMLError_NotSupported(NVMLError):
    def __init__(self):
        NVMLError.__init__(self, NVML_ERROR_NOT_SUPPORTED)


class _Struct:
    def __init__(self, **fields):
        self.__dict__.update(fields)


_state = {"gpus": None}


def nvmlInit():
    source = ugro_gpusim.config().get("source", "nvml")
    if source == "mismatch":
        raise NVMLError(NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    if source == "none":
        raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
    _state["gpus"] = ugro_gpusim.snapshot()


def nvmlShutdown():
    _state["gpus"] = None


def nvmlSystemGetDriverVersion():
    return ugro_gpusim.DRIVER


def nvmlDeviceGetCount():
    # One fresh snapshot per sweep over the devices, as a real driver would give.
    _state["gpus"] = ugro_gpusim.snapshot()
    return len(_state["gpus"])


def nvmlDeviceGetHandleByIndex(index):
    gpus = _state["gpus"] if _state["gpus"] is not None else ugro_gpusim.snapshot()
    return gpus[index]


def nvmlDeviceGetUUID(h):
    return h["uuid"]


def nvmlDeviceGetName(h):
    return h["name"]


def nvmlDeviceGetUtilizationRates(h):
    return _Struct(gpu=h["util"], memory=h["util"] // 2)


def nvmlDeviceGetMemoryInfo(h):
    mib = 1024 * 1024
    return _Struct(total=h["mem_total"] * mib, used=h["mem_used"] * mib, free=(h["mem_total"] - h["mem_used"]) * mib)


def nvmlDeviceGetTemperature(h, sensor):
    return h["temp"]


def nvmlDeviceGetPowerUsage(h):
    return int(h["power"] * 1000)


def nvmlDeviceGetTotalEnergyConsumption(h):
    if h.get("energy_mj") is None:
        raise NVMLError_NotSupported()
    return h["energy_mj"]


def nvmlDeviceGetEnforcedPowerLimit(h):
    return int(h["power_limit"] * 1000)


def nvmlDeviceGetFanSpeed(h):
    if h["fan"] is None:
        raise NVMLError_NotSupported()
    return h["fan"]


def nvmlDeviceGetComputeRunningProcesses(h):
    return [_Struct(pid=pid, usedGpuMemory=mib * 1024 * 1024) for pid, mib in h["procs"]]


def nvmlDeviceGetGraphicsRunningProcesses(h):
    return []
