"""deploy/nginx/siopg.conf for real: nginx (TLS) in front of two "machines" on loopback.

Each machine is a supervisor with its own --node-id; both share one PostgreSQL. The config
file is the one users copy, with only addresses, ports and certificate paths rewritten.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from sv_helpers import requires_node
from sv_helpers import APPS, REPO, NodeClients, free_port

APP = str(APPS / "siopg_app.py") + ":io"
CONF = REPO / "deploy" / "nginx" / "siopg.conf"

pytestmark = [
    requires_node,
    pytest.mark.skipif(not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()), reason="nginx not installed"),
    pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed"),
]


def _nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def render_config(tmp: Path, web1: int, web2: int, http_port: int, https_port: int) -> Path:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    site = CONF.read_text()
    for old, new in (("10.0.0.11:3000", f"127.0.0.1:{web1}"), ("10.0.0.12:3000", f"127.0.0.1:{web2}"),
                     ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
                     ("/etc/ssl/siopg/fullchain.pem", str(cert)), ("/etc/ssl/siopg/privkey.pem", str(key))):
        assert old in site, old
        site = site.replace(old, new)
    (tmp / "siopg.conf").write_text(site)
    main = tmp / "nginx.conf"
    main.write_text(f"""
user root;
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/siopg.conf;
}}
""")
    return main


def _wait_port(port: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


def test_nginx_tls_in_front_of_two_machines(supervisor_factory, tmp_path):
    web1 = supervisor_factory(APP, 1, "--node-id", "web1")
    web2 = supervisor_factory(APP, 1, "--node-id", "web2")
    http_port, https_port = free_port(), free_port()
    conf = render_config(tmp_path, web1.port, web2.port, http_port, https_port)
    check = subprocess.run([_nginx(), "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen([_nginx(), "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    clients = None
    try:
        web1.wait_serving()
        web2.wait_serving()
        _wait_port(https_port)
        # plain HTTP is redirected to TLS
        with socket.create_connection(("127.0.0.1", http_port)) as s:
            s.sendall(b"GET /socket.io/ HTTP/1.1\r\nHost: chat.example.com\r\nConnection: close\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 301 ")
        # readiness through TLS
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", https_port))) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: chat.example.com\r\nConnection: close\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 200 ")
        clients = NodeClients(f"https://127.0.0.1:{https_port}", 40, rejectUnauthorized=False)
        state = clients.cmd("wait 40")
        assert state["ready"] and state["upgraded"] == 40, state
        assert state["sessionUnknown"] == 0 and not state["connectErrors"], state
        answers = clients.cmd("ping 10")
        assert answers["ok"] == 40
        assert sorted(answers["workers"]) == ["web1-1", "web2-1"], answers  # both machines serve
        heard = clients.cmd("shout 1", 60)  # broadcasts cross machines through PostgreSQL
        assert heard["all"], heard
        # polling-only clients, whose every request goes through nginx's sid routing
        polling = NodeClients(f"https://127.0.0.1:{https_port}", 20, transports=["polling"], rejectUnauthorized=False)
        try:
            assert polling.cmd("wait 30")["ready"]
            for _ in range(3):
                assert polling.cmd("ping 10")["ok"] == 20
            assert polling.cmd("stats")["sessionUnknown"] == 0
        finally:
            polling.close()
    finally:
        if clients:
            clients.close()
        nginx.terminate()
        nginx.wait(10)
