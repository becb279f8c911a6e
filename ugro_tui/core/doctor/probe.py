"""ugro doctor's probe. It runs ON the node, from stdin: stdlib only (torch when the node has it), Python 3.8+.

    facts JSON    one JSON object: Python, torch, torchrun, driver, disk, interface, name resolution, a TCP
                  connection to the master's listener (when the request names one), and the clock
    listen LO HI TOKEN SECONDS
                  bind the first free port in LO..HI on every interface (as torchrun's store does), print it,
                  answer each connection with TOKEN; leave after SECONDS or when stdin closes
The telemetry agent's source comes in AGENT (filled in by ugro), so the driver is read the same way.
"""

import errno
import importlib.util
import json
import os
import platform
import shutil
import socket
import sys
import threading
import time
import types

AGENT = None  # replaced with the agent's source before sending


def _error(exc):
    return "%s: %s" % (type(exc).__name__, exc)


def torch_facts():
    try:
        import torch
    except BaseException as exc:  # a broken install can raise anything, even SystemExit
        return {"error": _error(exc)}
    out = {"version": str(getattr(torch, "__version__", "?")), "cuda": None, "cuda_available": False,
           "gpu_count": 0, "nccl": None, "distributed": False}
    try:
        out["cuda"] = torch.version.cuda
        out["cuda_available"] = bool(torch.cuda.is_available())
        out["gpu_count"] = int(torch.cuda.device_count()) if out["cuda_available"] else 0
    except Exception as exc:
        out["cuda_error"] = _error(exc)
    try:
        version = torch.cuda.nccl.version()
        out["nccl"] = ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)
    except Exception:
        pass  # a CPU build has no NCCL
    try:
        out["distributed"] = bool(torch.distributed.is_available())
    except Exception as exc:
        out["distributed_error"] = _error(exc)
    try:
        out["run_module"] = importlib.util.find_spec("torch.distributed.run") is not None
    except Exception:
        out["run_module"] = False
    return out


def _agent():
    agent = types.ModuleType("ugro_agent")
    exec(compile(AGENT or "", "agent.py", "exec"), agent.__dict__)
    return agent


def driver_facts():
    source, error = _agent().open_source()
    if source is None:
        return {"error": error, "gpus": 0, "source": "none"}
    try:
        gpus = source.sample()
    except Exception as exc:
        return {"error": _error(exc), "gpus": 0, "source": source.name}
    return {"driver": getattr(source, "driver", None), "gpus": len(gpus), "source": source.name,
            "models": [g.get("name") for g in gpus]}


def disk_facts(workdir):
    path = os.path.expanduser(workdir)
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe.rstrip("/")) or "/"
    try:
        usage = shutil.disk_usage(probe)
    except OSError as exc:
        return {"error": _error(exc), "path": path}
    return {"path": path, "exists": os.path.isdir(path), "checked": probe, "free": usage.free,
            "writable": os.access(probe, os.W_OK)}


def resolve(hosts):
    out = {}
    for host in hosts:
        try:
            infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
            out[host] = sorted({info[4][0] for info in infos})
        except (OSError, UnicodeError) as exc:
            out[host] = {"error": _error(exc)}
    return out


def interface(name):
    if not name:
        return None
    try:
        socket.if_nametoindex(name)
        return {"exists": True}
    except OSError:
        try:
            names = sorted(n for _, n in socket.if_nameindex())
        except OSError:
            names = []
        return {"exists": False, "have": names}


def facts(request):
    torch = torch_facts()
    beside = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "hostname": socket.gethostname(),
        "torch": torch,
        "torchrun": {"path": shutil.which("torchrun"), "beside_python": beside if os.access(beside, os.X_OK) else None},
        "driver": driver_facts(),
        "disk": disk_facts(request.get("workdir") or "~"),
        "interface": interface(request.get("ifname")),
        "resolve": resolve(request.get("hosts", []) + [socket.gethostname()]),
    }
    if request.get("rendezvous"):
        out["rendezvous"] = reach(request["rendezvous"])
    out["time"] = time.time()  # last: the clock offset is measured against when this line arrives
    return out


def _bind(port):
    """Every interface, IPv6 and IPv4 at once where the node has IPv6, as torchrun's store server binds."""
    for family, where in ((getattr(socket, "AF_INET6", None), ("::", port)), (socket.AF_INET, ("", port))):
        if family is None:
            continue
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 here
        try:
            if family != socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
            sock.listen(64)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise
    raise OSError("cannot listen on port %d" % port)


def listen(lo, hi, token, seconds):
    server = None
    for port in range(lo, hi + 1):
        try:
            server = _bind(port)
            break
        except OSError:
            continue
    if server is None:
        print(json.dumps({"error": "no free port in %d-%d (every one is in use)" % (lo, hi)}), flush=True)
        return
    print(json.dumps({"port": port}), flush=True)
    threading.Thread(target=_agent()._exit_when_stdin_closes, daemon=True).start()
    server.settimeout(0.2)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        with conn:
            conn.settimeout(2.0)
            try:
                conn.sendall(token.encode() + b"\n")
                # The client closes first, so TIME_WAIT stays on its side and torchrun can bind this port next.
                while conn.recv(64):
                    pass
            except OSError:
                pass


def reach(target):
    """TCP to the master's listener, as torchrun's store client would; the token proves it is ours."""
    host, port, token = target["host"], int(target["port"]), target["token"]
    started = time.time()
    try:
        with socket.create_connection((host, port), timeout=3.0) as conn:
            conn.settimeout(3.0)
            answer = conn.makefile("rb").readline().decode("utf-8", "replace").strip()
    except (OSError, UnicodeError) as exc:
        return {"ok": False, "error": _error(exc)}
    if answer != token:
        return {"ok": False, "error": "another program answers on %s:%d" % (host, port)}
    return {"ok": True, "ms": round((time.time() - started) * 1000, 2)}


def main(argv):
    mode = argv[0]
    if mode == "facts":
        sys.stdout.write(json.dumps(facts(json.loads(argv[1]))) + "\n")
    elif mode == "listen":
        listen(int(argv[1]), int(argv[2]), argv[3], float(argv[4]))


if __name__ == "__main__":
    main(sys.argv[1:])
