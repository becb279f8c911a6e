"""`ugro web` for real: the token and Origin rules, every API route against the loopback cluster, bad bodies, and
the app in Debian's headless Chromium (playwright drives it; its screen is read from xterm.js's buffer)."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import private_lab
from ..helpers import free_ports

pytestmark = pytest.mark.timeout(180)
# tests/artifacts/web-nodes.png is one such screenshot, kept for people to look at.


class Web:
    def __init__(self, proc: subprocess.Popen[str], url: str, config: Path) -> None:
        self.proc = proc
        self.url = url
        self.config = config
        parsed = urlparse(url)
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self.token = url.split("token=", 1)[1]

    def call(self, path: str, method: str = "GET", body: bytes | None = None, token: str | None = "",
             headers: dict[str, str] | None = None, opener=None) -> tuple[int, bytes, dict]:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.token}"
        request = urllib.request.Request(self.base + path, method=method, data=body, headers=headers)
        try:
            with (opener or urllib.request.build_opener()).open(request, timeout=30) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def json(self, path: str, method: str = "GET", body: object | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        status, out, _ = self.call(path, method, data, headers={"Content-Type": "application/json"})
        return status, json.loads(out)


def app_processes(config: Path) -> list[int]:
    """The app processes textual-serve started for browser tabs (`python -m ugro_tui --config CONFIG`)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and str(config).encode() in words and b"web" not in words:
                out.append(int(entry.name))
    return out


@pytest.fixture
def web(lab: LoopbackCluster, tmp_path: Path) -> Iterator[Web]:
    with private_lab(lab, tmp_path) as config:
        port = free_ports(1, ("127.0.0.1",))
        proc = subprocess.Popen([sys.executable, "-m", "ugro_tui", "web", "--port", str(port), "--config",
                                 str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:  # stopped whatever happens, a failed start included
            url = proc.stdout.readline().strip()
            assert url.startswith(f"http://127.0.0.1:{port}/?token="), proc.stderr.read() if proc.poll() else url
            server = Web(proc, url, config)
            deadline = time.monotonic() + 20

            def up() -> bool:
                try:
                    return server.json("/api/v1/cluster/health")[1]["nodes_healthy"] == 3
                except urllib.error.URLError:  # not listening yet
                    return False

            while not up():
                assert time.monotonic() < deadline, "ugro web did not come up with 3 nodes"
                time.sleep(0.2)
            yield server
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        deadline = time.monotonic() + 10
        while app_processes(config):  # every tab's app went with the service
            assert time.monotonic() < deadline, f"app processes left: {app_processes(config)}"
            time.sleep(0.2)


def test_the_token_file_is_private_and_every_route_needs_the_token(web: Web) -> None:
    token_file = Path(os.environ["XDG_CONFIG_HOME"]) / "ugro" / "web-token"
    assert token_file.stat().st_mode & 0o777 == 0o600 and token_file.read_text().strip() == web.token
    assert len(web.token) >= 43  # 32 random bytes
    for path in ("/", "/api/v1/health", "/api/v1/jobs", "/static/js/textual.js", "/ws"):
        for token in (None, "wrong-" + web.token[6:]):
            status, body, _ = web.call(path, token=token)
            assert status == 401 and "token" in json.loads(body)["error"], (path, token, body)
    assert web.call("/?token=nope", token=None)[0] == 401
    # The printed link sets an HttpOnly, SameSite=Strict cookie and takes the token out of the address bar.
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                         type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None})())
    status, _, headers = web.call("/?token=" + web.token, token=None, opener=opener)
    assert status == 302 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and web.token in cookie
    with_cookie = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, page, _ = web.call("/", token=None, opener=with_cookie)
    assert status == 200 and b"textual.js" in page and b"fonts.googleapis.com" not in page
    assert web.call("/api/v1/health", token=None, opener=with_cookie)[0] == 200
    # /ws: the right token from a foreign page is still refused.
    ws = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert web.call("/ws", headers={**ws, "Origin": "http://evil.example"})[0] == 403
    assert web.call("/ws", headers=ws)[0] == 403  # no Origin at all
    asyncio.run(a_session_comes_and_goes(web))


async def a_session_comes_and_goes(web: Web) -> None:
    """With the token and this page's Origin the websocket opens an app process; closing it ends the process."""
    import aiohttp

    headers = {"Authorization": f"Bearer {web.token}", "Origin": web.base}
    async with aiohttp.ClientSession() as session, session.ws_connect(web.base + "/ws?width=80&height=24",
                                                                      headers=headers) as ws:
        deadline = time.monotonic() + 20
        while not app_processes(web.config):
            assert time.monotonic() < deadline, "no app process for the session"
            await asyncio.sleep(0.1)
        await ws.receive(timeout=20)  # the app draws
    deadline = time.monotonic() + 15
    while app_processes(web.config):
        assert time.monotonic() < deadline, "the session's app process outlived it"
        await asyncio.sleep(0.2)


def test_every_endpoint_over_the_loopback_cluster(web: Web) -> None:
    status, health = web.json("/api/v1/health")
    assert status == 200 and health["ok"] is True and health["dispatcher"] == "dispatch: here"
    status, cluster = web.json("/api/v1/cluster")
    assert [n["name"] for n in cluster["nodes"]] == ["node0", "node1", "node2"] and cluster["nodes"][0]["host"]
    status, ids = web.json("/api/v1/jobs", "POST", {"command": ["sh", "-c", "echo one; sleep 1; echo two"],
                                                    "kind": "command", "name": "api-job", "nnodes": 2})
    assert status == 201 and ids == {"ids": [1]}
    status, sweep = web.json("/api/v1/jobs", "POST", {"command": ["sh", "-c", "echo {x}"], "kind": "command",
                                                      "sweep": ["x=a,b"], "hold": True})
    assert status == 201 and sweep == {"ids": [2, 3]}
    # The SSE stream follows job 1 until it ends, with every line.
    status, body, headers = web.call("/api/v1/jobs/1/logs?follow=1")
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = body.decode()
    assert "data: node0| one" in events and "data: node1| two" in events and events.endswith(
        "event: end\ndata: the job ended\n\n")
    status, text, _ = web.call("/api/v1/jobs/1/logs?node=node1")
    assert status == 200 and text == b"node1| one\nnode1| two\n"
    status, job = web.json("/api/v1/jobs/1")
    assert job["state"] == "succeeded" and job["name"] == "api-job"
    queue = subprocess.run([sys.executable, "-m", "ugro_tui", "queue", "--json", "--config", str(web.config)],
                           capture_output=True, text=True)
    assert json.loads(queue.stdout) == web.json("/api/v1/jobs")[1]  # the same document as `ugro queue --json`
    assert [j["id"] for j in web.json("/api/v1/jobs?state=held")[1]["jobs"]] == [2, 3]
    assert web.json("/api/v1/jobs/2/release", "POST")[1] == {"ok": True, "message": "2: queued"}
    before = {j["id"]: j["state"] for j in web.json("/api/v1/jobs")[1]["jobs"]}
    assert web.json("/api/v1/jobs/3/cancel", "POST")[1] == {"ok": True, "message": "3: cancelled"}
    after = {j["id"]: j["state"] for j in web.json("/api/v1/jobs")[1]["jobs"]}  # the shared list follows the store
    assert (before[3], after[3]) == ("held", "cancelled")
    assert web.json("/api/v1/jobs/3/retry", "POST")[1]["ok"] is True
    status, ids = web.json("/api/v1/jobs", "POST", {"template": "train-tiny", "set": ["nnodes=2"], "hold": True})
    status, job = web.json(f"/api/v1/jobs/{ids['ids'][0]}")
    assert job["spec"]["template"] == "train-tiny" and job["spec"]["nnodes"] == 2 and job["state"] == "held"
    status, doc = web.json("/api/v1/openapi.json")
    assert status == 200 and {"/api/v1/jobs", "/api/v1/jobs/{id}/logs", "/api/v1/cluster/health"} <= set(doc["paths"])


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [
    ("POST", "/api/v1/jobs", b"{not json", 400, "not JSON"),
    ("POST", "/api/v1/jobs", b"[1, 2]", 400, "expected a JSON object"),
    ("POST", "/api/v1/jobs", json.dumps({"command": ["x.py"], "bogus": 1}).encode(), 400, "unknown key 'bogus'"),
    ("POST", "/api/v1/jobs", json.dumps({"command": ["x.py"], "nnodes": "two"}).encode(), 400, "nnodes"),
    ("POST", "/api/v1/jobs", json.dumps({"command": [1]}).encode(), 400, "command: expected text"),
    ("POST", "/api/v1/jobs", json.dumps({"command": ["x"], "env": {"A-B": "1"}}).encode(), 400,
     "env: 'A-B' is not a variable name"),
    ("POST", "/api/v1/jobs", json.dumps({"template": "train-tiny", "set": ["env.A-B=1"]}).encode(), 400,
     "env: 'A-B' is not a variable name"),
    ("POST", "/api/v1/jobs", json.dumps({"command": ["x"], "sweep": ["lr"]}).encode(), 400, "lr"),
    ("POST", "/api/v1/jobs", json.dumps({"template": "nope"}).encode(), 400, "no template 'nope'"),
    ("POST", "/api/v1/jobs", "HUGE", 413, "over 1 MiB"),
    ("GET", "/api/v1/jobs/abc", None, 400, "not a job id"),
    ("GET", "/api/v1/jobs/999", None, 404, "no job 999"),
    ("POST", "/api/v1/jobs/1/explode", None, 404, "no action 'explode'"),
    ("GET", "/api/v1/jobs?state=bogus", None, 400, "state 'bogus'"),
    ("GET", "/api/v1/jobs/1/logs?rank=x", None, 400, "rank: expected a whole number"),
    ("POST", "/api/v1/jobs", json.dumps({"template": "train-tiny", "set": "nnodes"}).encode(), 400, "key=value"),
    ("GET", "/api/v1/nothing", None, 404, "Not Found"),
])
def test_bad_requests_are_one_json_error(web: Web, method: str, path: str, body: bytes | None, status: int,
                                         words: str) -> None:
    if body == "HUGE":  # made here: a parameter's value is in the test's id, and that is in the environment
        body = b"x" * ((1 << 20) + 1)
    got, out, headers = web.call(path, method, body, headers={"Content-Type": "application/json"})
    assert got == status and headers["Content-Type"].startswith("application/json"), (got, out)
    assert words in json.loads(out)["error"]


HOOK = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {  // textual-serve keeps its xterm.js Terminal in `this.terminal`: keep a handle for the test
    window.__terminal = value;
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
  },
});
"""
SCREEN = """() => {
  const t = window.__terminal; if (!t) return "";
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) {
    const l = b.getLine(b.viewportY + i);
    rows.push(l ? l.translateToString(true) : "");
  }
  return rows.join("\\n");
}"""


async def test_the_app_in_headless_chromium(web: Web, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api", reason="playwright is a test extra")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    status, ids = web.json("/api/v1/jobs", "POST", {"command": ["sh", "-c", "for i in $(seq 600); do echo tick $i; "
                                                                "sleep 1; done"], "kind": "command",
                                                    "name": "browser-job"})
    assert status == 201
    allowed = urlparse(web.base).hostname

    async def loopback_only(route) -> None:  # the page may reach this server and nothing else
        if urlparse(route.request.url).hostname == allowed:
            await route.continue_()
        else:
            await route.abort()

    async with playwright.async_playwright() as p:
        args = ["--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
        browser = await p.chromium.launch(executable_path=chromium, args=args)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.route("**/*", loopback_only)
            await page.add_init_script(HOOK)
            await page.goto(web.url)
            assert page.url == web.base + "/"  # the token left the address bar

            async def screen_has(*words: str, timeout: float = 60) -> str:
                deadline = time.monotonic() + timeout
                while True:
                    text = await page.evaluate(SCREEN)
                    if all(w in text for w in words):
                        return text
                    assert time.monotonic() < deadline, f"the screen never showed {words}:\n{text}"
                    await page.wait_for_timeout(250)

            text = await screen_has("node0", "node1", "node2", "RTX 5070 Ti", "RTX 4070", "RTX 3070 Ti", "CPU")
            assert "▕" in text or "█" in text or "░" in text  # a GPU gauge
            await page.screenshot(path=str(tmp_path / "web-nodes.png"))
            assert len(app_processes(web.config)) == 1  # one app process for this tab
            await two_more_tabs_logs_f_and_status_watch_add_no_connection(browser, web, tmp_path)
            await page.evaluate("() => window.__terminal.focus()")  # keys go to the terminal, as after a click
            await page.keyboard.press("2")
            await screen_has("browser-job", "running")
            await page.keyboard.press("l")
            await screen_has("tick", "node0")  # its pane, with its output
            await page.close()
            deadline = time.monotonic() + 15
            while app_processes(web.config):  # closing the tab ends its app process
                assert time.monotonic() < deadline, "the tab's app process outlived the tab"
                await asyncio.sleep(0.2)
        finally:
            await browser.close()


async def two_more_tabs_logs_f_and_status_watch_add_no_connection(browser, web: Web, tmp_path: Path) -> None:
    """Three tabs, `ugro logs -f` and `ugro status --watch` beside `ugro web` (the daemon): still exactly one SSH
    connection and one telemetry agent per node, counted with ss and /proc, whoever's they are."""
    from ugro_tui.config import load_cluster

    from .test_daemon import agents_of
    from .test_one_connection import connections

    cluster = load_cluster(web.config)
    pages = [await browser.new_page(viewport={"width": 1400, "height": 900}) for _ in range(2)]
    base = [sys.executable, "-m", "ugro_tui"]
    watchers = [subprocess.Popen([*base, *verb, "--config", str(web.config)], stdout=subprocess.DEVNULL,
                                 stderr=(tmp_path / f"{verb[0]}.err").open("w")) for verb in (("logs", "-f", "1"),
                                                                                            ("status", "--watch"))]
    async def loopback_only(route) -> None:  # the page may reach this server and nothing else
        await (route.continue_() if urlparse(route.request.url).hostname == urlparse(web.base).hostname
               else route.abort())

    try:
        for page in pages:
            await page.route("**/*", loopback_only)
            await page.add_init_script(HOOK)
            await page.goto(web.url)
        for page in pages:
            deadline = time.monotonic() + 60
            while "RTX 3070 Ti" not in await page.evaluate(SCREEN):  # this tab's app shows the daemon's nodes
                assert time.monotonic() < deadline, "a tab never showed the nodes"
                await page.wait_for_timeout(250)
        tabs = set(app_processes(web.config)) - {w.pid for w in watchers}
        assert len(tabs) == 3 and all(w.poll() is None for w in watchers), [
            (tmp_path / f"{v}.err").read_text() for v in ("logs", "status")]
        assert connections(cluster) == {"node0": 1, "node1": 1, "node2": 1}
        assert [len(agents_of(Path(n.workdir))) for n in cluster.nodes] == [1, 1, 1]
    finally:
        for w in watchers:
            w.terminate()
            w.wait(10)
        for page in pages:
            await page.close()
