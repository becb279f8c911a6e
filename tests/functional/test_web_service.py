"""`ugro web` as a service: read-only mode over the API, a token file others may read refused, a host that is
not loopback warned about, and TLS with a secure cookie."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ugro_tui.errors import UgroError
from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import private_lab
from ..helpers import free_ports
from .test_web import Web

pytestmark = pytest.mark.timeout(180)


def test_read_only_applies_to_the_api_and_the_service_is_careful_with_its_token(lab: LoopbackCluster,
                                                                                  tmp_path: Path) -> None:
    with private_lab(lab, tmp_path) as config:
        config.write_text(config.read_text().replace("[cluster]\n", "[cluster]\nread_only = true\n"))
        port = free_ports(1, ("127.0.0.1",))
        proc = subprocess.Popen([sys.executable, "-m", "ugro_tui", "web", "--port", str(port), "--no-dispatch",
                                 "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            server = Web(proc, proc.stdout.readline().strip(), config)
            deadline = time.monotonic() + 20
            while True:
                try:
                    status, health = server.json("/api/v1/health")
                    break
                except urllib.error.URLError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert health["dispatcher"] == "not dispatching here (--no-dispatch)"
            status, out = server.json("/api/v1/jobs", "POST", {"command": ["x.py"]})
            assert status == 403 and out["error"].startswith("read-only: POST /api/v1/jobs is refused")
            assert server.json("/api/v1/jobs/1/cancel", "POST")[0] == 403
            assert server.json("/api/v1/jobs")[1] == {"jobs": []}  # looking still works
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    token_file = Path(os.environ["XDG_CONFIG_HOME"]) / "ugro" / "web-token"
    old = token_file.read_text()
    token_file.chmod(0o644)  # readable by others: refused, not used
    out = subprocess.run([sys.executable, "-m", "ugro_tui", "web", "--config", str(config)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and "mode 644 lets others read the web token" in out.stderr
    # A host that is not loopback, without TLS: a warning with the safer way (the server is not started here).
    from ugro_tui.commands import web as command
    from ugro_tui.config import load_cluster
    from ugro_tui.web.server import UgroWeb

    async def refuse(self) -> str:
        raise OSError(99, "Cannot assign requested address")

    args = argparse.Namespace(host="0.0.0.0", port=8420, no_dispatch=True, tls_cert=None, tls_key=None,
                              rotate_token=True)
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()) as err:
        mp.setattr(UgroWeb, "listen", refuse)
        with pytest.raises(UgroError, match="ugro web: cannot listen on 0.0.0.0:8420: Cannot assign"):
            command.run(args, load_cluster(config))
    assert "token=" not in out.getvalue()  # the link is printed only once the view accepts connections
    assert token_file.read_text().strip() != old.strip()
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert "WARNING: 0.0.0.0 is not loopback and there is no TLS: the token travels in clear" in err.getvalue()
    assert "ssh -L 8420:127.0.0.1:8420" in err.getvalue()
    assert command.is_loopback("127.0.0.1") and command.is_loopback("::1") and command.is_loopback("localhost")
    assert not command.is_loopback("0.0.0.0") and not command.is_loopback("gpu-master")


def self_signed(folder: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address(
                "127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_serves_https_and_a_secure_cookie(lab: LoopbackCluster, tmp_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    with private_lab(lab, tmp_path) as config:
        port = free_ports(1, ("127.0.0.1",))
        proc = subprocess.Popen([sys.executable, "-m", "ugro_tui", "web", "--port", str(port), "--no-dispatch",
                                 "--tls-cert", str(cert), "--tls-key", str(key), "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            server = Web(proc, proc.stdout.readline().strip(), config)
            assert server.url.startswith(f"https://127.0.0.1:{port}/?token=")
            context = ssl.create_default_context(cafile=str(cert))
            opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                                 type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                                      {"redirect_request": lambda *a, **k: None})())
            deadline = time.monotonic() + 20
            while True:
                try:
                    status, _, headers = server.call("/?token=" + server.token, token=None, opener=opener)
                    break
                except urllib.error.URLError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert status == 302 and "Secure" in headers["Set-Cookie"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    out = subprocess.run([sys.executable, "-m", "ugro_tui", "web", "--tls-cert", str(cert), "--config", str(config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "give --tls-cert and --tls-key together" in out.stderr
