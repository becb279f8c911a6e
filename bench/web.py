"""`ugro web` benchmark, side by side in one run, against real sshd nodes on 127.0.9.2-4:

  1. page open to first frame: headless Chromium (Debian's) from navigation to the first screen with 3 nodes drawn;
  2. 20 concurrent API clients listing a queue of 1,000 jobs: p50/p99 latency, against `ugro queue --json` run in a
     loop (the baseline a script would otherwise use);
  3. memory per browser session: the resident size of the app process each tab starts.

Usage: python bench/web.py [--requests N]. Only 127.0.0.0/8 is used; the page may reach nothing else.
"""

from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster, free_port

HOSTS = ["127.0.9.2", "127.0.9.3", "127.0.9.4"]
HOOK = """Object.defineProperty(Object.prototype, "terminal", {configurable: true, set(v) {
  window.__terminal = v; Object.defineProperty(this, "terminal", {value: v, writable: true, configurable: true});}});"""
SCREEN = """() => { const t = window.__terminal; if (!t) return ""; const b = t.buffer.active; let s = "";
  for (let i = 0; i < t.rows; i++) { const l = b.getLine(i); if (l) s += l.translateToString(true) + "\\n"; }
  return s; }"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def app_pids(config: Path) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(config).encode() in words and b"web" not in words:
                out.append(int(entry.name))
    return out


async def api_latencies(base: str, token: str, clients: int, each: int) -> list[float]:
    import aiohttp

    times: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async def client() -> None:
            for _ in range(each):
                t = time.perf_counter()
                async with session.get(base + "/api/v1/jobs") as r:
                    await r.read()
                    assert r.status == 200
                times.append(time.perf_counter() - t)

        await asyncio.gather(*(client() for _ in range(clients)))
    return times


async def first_frame(url: str) -> tuple[float, float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"),
                                          args=["--no-sandbox", "--disable-dev-shm-usage",
                                                "--disable-background-networking"])
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        allowed = url.split("/")[2].split(":")[0]
        await page.route("**/*", lambda route: route.continue_() if route.request.url.split("/")[2].split(":")[0]
                         == allowed else route.abort())
        await page.add_init_script(HOOK)
        t = time.perf_counter()
        await page.goto(url)
        while True:
            screen = await page.evaluate(SCREEN)
            if all(w in screen for w in ("node0", "node1", "node2", "RTX")):
                break
            await asyncio.sleep(0.02)
        opened = time.perf_counter() - t
        await asyncio.sleep(2)
        config = Path(os.environ["UGRO_BENCH_CONFIG"])
        memory = sum(rss_mib(pid) for pid in app_pids(config))
        await browser.close()
    return opened, memory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10, help="per client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ugro-bench-web-") as tmp:
        base = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(base / "state")
        os.environ["XDG_CONFIG_HOME"] = str(base / "config")
        lab = LoopbackCluster(base / "lab", hosts=HOSTS).start()
        config = base / "cluster.toml"
        config.write_text(lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 3, poll_interval=1.0))
        os.environ["UGRO_BENCH_CONFIG"] = str(config)
        from ugro_tui.core.jobs.model import JobSpec
        from ugro_tui.core.jobs.store import JobStore

        JobStore().submit([JobSpec(f"job-{i}", ("train.py", "--lr", str(i)), nodes=("nobody",)) for i in range(1000)],
                          hold=True)
        port = free_port("127.0.0.1")
        web = subprocess.Popen([sys.executable, "-m", "ugro_tui", "web", "--port", str(port), "--no-dispatch",
                                "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = web.stdout.readline().strip()
            token = url.split("token=")[1]
            time.sleep(3)
            opened, memory = asyncio.run(first_frame(url))
            api = asyncio.run(api_latencies(f"http://127.0.0.1:{port}", token, 20, args.requests))
            cli = []
            for _ in range(10):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-m", "ugro_tui", "queue", "--json", "--config", str(config)],
                               capture_output=True, check=True)
                cli.append(time.perf_counter() - t)
        finally:
            web.terminate()
            web.wait(20)
            lab.stop()
    api.sort()
    p99 = api[min(len(api) - 1, int(len(api) * 0.99))]
    print("web benchmark (3 simulated nodes over sshd on loopback; queue of 1,000 jobs)")
    print(f"  page open to first frame with 3 nodes : {opened * 1000:7.0f} ms")
    print(f"  API, 20 clients, GET /api/v1/jobs     : p50 {statistics.median(api) * 1000:6.1f} ms   "
          f"p99 {p99 * 1000:6.1f} ms   ({len(api)} requests)")
    print(f"  `ugro queue --json` in a loop         : p50 {statistics.median(cli) * 1000:6.1f} ms   (one at a time)")
    print(f"  memory per browser session (app RSS)  : {memory:7.1f} MiB")


if __name__ == "__main__":
    main()
