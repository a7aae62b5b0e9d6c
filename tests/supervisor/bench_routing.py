"""What routing through the supervisor costs (not a test; run by hand, numbers in deploy/README.md).

    python tests/supervisor/bench_routing.py [--clients 50] [--seconds 8]

For each setup, N official clients call an ack'ed event back to back:
  direct   `siopg serve` single process, keep-alive polling (no supervisor)
  sup-1    supervisor + 1 worker: each polling request is a new TCP connection, routed by sid
  sup-2    supervisor + 2 workers
and reports round trips per second, plus the supervisor's CPU seconds per 1000 requests.
Same for WebSocket clients, where the supervisor only sees the upgrade request.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sv_helpers import APPS, REPO, NodeClients, Supervisor, free_port  # noqa: E402

APP = str(APPS / "siopg_app.py") + ":io"


def cpu_split(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(url: str, n: int, seconds: float, transports: list[str], sup_pid: int | None) -> dict:
    clients = NodeClients(url, n, transports=transports)
    try:
        state = clients.cmd("wait 60")
        assert state["ready"], state
        clients.cmd("loop 1")  # warm up
        cpu0 = cpu_seconds(sup_pid) if sup_pid else 0.0
        res = clients.cmd(f"loop {seconds}", seconds + 30)
        cpu = (cpu_seconds(sup_pid) - cpu0) if sup_pid else 0.0
        rate = res["acks"] / seconds
        out = {"rtt_per_s": round(rate), "failed": res["failed"]}
        if sup_pid:
            # polling: each ack is about two HTTP requests (the POST and the GET that carries the answer)
            out["supervisor_cpu_s"] = round(cpu, 2)
            out["supervisor_cpu_us_per_rtt"] = round(cpu / max(1, res["acks"]) * 1e6, 1)
        return out
    finally:
        clients.close()


def direct(n: int, seconds: float, transports: list[str]) -> dict:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "siopg", "serve", APP, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 20
        import socket

        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        return run_clients(f"http://127.0.0.1:{port}", n, seconds, transports, None)
    finally:
        proc.terminate()
        proc.wait(10)


def supervised(workers: int, n: int, seconds: float, transports: list[str], dsn: str | None) -> dict:
    args = ["--database-url", dsn] if dsn else []
    sv = Supervisor(APP, workers, *args)
    try:
        sv.wait_serving()
        return run_clients(sv.url, n, seconds, transports, sv.proc.pid)
    finally:
        sv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--database-url", default=os.environ.get("SIOPG_TEST_DATABASE_URL"))
    a = ap.parse_args()
    for name, transports in (("polling", ["polling"]), ("websocket", ["websocket"])):
        print(name, "direct", direct(a.clients, a.seconds, transports), flush=True)
        print(name, "sup-1 ", supervised(1, a.clients, a.seconds, transports, None), flush=True)
        print(name, "sup-2 ", supervised(2, a.clients, a.seconds, transports, a.database_url), flush=True)


if __name__ == "__main__":
    main()
