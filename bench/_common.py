"""Process plumbing shared by bench/fanout.py and bench/connections.py.

Starts servers and Node load clients pinned to CPUs, talks to the load clients
through JSON lines, reads CPU time and RSS from /proc, and guarantees that every
child process group it started is gone when the harness exits, even on error.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("siopg", "node")

_children: list[subprocess.Popen[bytes]] = []
LOG_DIR = Path(tempfile.mkdtemp(prefix="siopg-bench-"))


def _kill_group(p: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """Stop one child and its process group (each child runs in its own session)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # stragglers in the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(1)
    except subprocess.TimeoutExpired:
        pass


def kill_all() -> None:
    while _children:
        _kill_group(_children.pop())


def stop(p: subprocess.Popen[bytes]) -> None:
    if p in _children:
        _children.remove(p)
    _kill_group(p)


def _on_signal(signum: int, _frame: Any) -> None:
    kill_all()
    sys.exit(128 + signum)


atexit.register(kill_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def raise_nofile(want: int) -> int:
    """Raise the soft open-files limit (inherited by children); returns the new value."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; log: {LOG_DIR}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


def server_cmd(kind: str, port: int, app: str) -> list[str]:
    """Command line for one server; app is the file stem in bench/apps (e.g. 'fanout')."""
    if kind == "node":
        return ["node", str(BENCH / "apps" / f"node_{app}.mjs"), str(port)]
    if kind == "siopg":
        target = f"{BENCH / 'apps' / f'siopg_{app}.py'}:io"
        return [sys.executable, "-m", "siopg", "serve", target, "--port", str(port), "--log-level", "warning"]
    raise ValueError(f"unknown server {kind!r}")


def spawn(cmd: list[str], cpu: str | None, name: str, *, pipes: bool = False) -> subprocess.Popen[bytes]:
    """Start a child in its own session, optionally pinned with taskset; stderr goes to a log file."""
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    err = open(LOG_DIR / f"{name}.log", "ab")
    p = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
        stdout=subprocess.PIPE if pipes else err,
        stderr=err,
        start_new_session=True,
    )
    err.close()
    _children.append(p)
    return p


def start_server(kind: str, app: str, cpu: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    p = spawn(server_cmd(kind, port, app), cpu, f"server-{kind}-{port}")
    wait_port(port, p)
    return p, port


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [pid], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants, in seconds."""
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident set size of a process and its live descendants, in KiB."""
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class LoadClients:
    """A set of Node load-client processes (bench/load_client.mjs) and their JSON-line events."""

    def __init__(self, url: str, counts: Iterable[int], mode: str, cpu: str | None, **extra: Any) -> None:
        self.events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.counts = list(counts)
        for i, n in enumerate(self.counts):
            cfg = {"url": url, "clients": n, "proc": i, "mode": mode, **extra}
            p = spawn(["node", str(BENCH / "load_client.mjs"), json.dumps(cfg)], cpu, f"load-{i}", pipes=True)
            self.procs.append(p)
            threading.Thread(target=self._reader, args=(i, p), daemon=True).start()

    def _reader(self, i: int, p: subprocess.Popen[bytes]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("type") == "log":
                print(f"    [load {i}] {msg.get('msg')}", file=sys.stderr)
                continue
            self.events.put((i, msg))
        self.events.put((i, {"type": "eof"}))

    def send(self, i: int, cmd: dict[str, Any]) -> None:
        p = self.procs[i]
        if p.poll() is None and p.stdin is not None:
            try:
                p.stdin.write((json.dumps(cmd) + "\n").encode())
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def collect(self, kind: str, timeout: float) -> dict[int, dict[str, Any]]:
        """Wait for one message of `kind` from every process (or until timeout / eof)."""
        got: dict[int, dict[str, Any]] = {}
        dead: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(got) + len(dead - got.keys()) < len(self.procs):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                i, msg = self.events.get(timeout=left)
            except queue.Empty:
                break
            if msg.get("type") == kind:
                got[i] = msg
            elif msg.get("type") == "eof":
                dead.add(i)
        return got

    def results(self, timeout: float) -> tuple[dict[int, dict[str, Any]], bool]:
        """Every process's "result" within `timeout`; then ask the stragglers for what they have.
        Returns the results and whether any process had to be asked (timed out)."""
        got = self.collect("result", timeout)
        timed_out = len(got) < len(self.procs)
        if timed_out:
            for i in range(len(self.procs)):
                if i not in got:
                    self.send(i, {"cmd": "report"})
            got.update(self.collect("result", 5))
        return got, timed_out

    def close(self) -> None:
        for i in range(len(self.procs)):
            self.send(i, {"cmd": "exit"})
        for p in self.procs:
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                pass
            stop(p)


def start_profiler(kind: str, pid: int, out_dir: str | None, label: str, cpu: str | None,
                   native: bool = False) -> subprocess.Popen[bytes] | None:
    """py-spy on a siopg server (collapsed stacks, for bench/profile_summary.py); None if off."""
    if not out_dir or kind != "siopg":
        return None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out = Path(out_dir).resolve() / f"siopg-{label}-{time.strftime('%H%M%S')}.txt"
    spy = str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", "250", "-F"]
    cmd.append("--native" if native else "--nonblocking")  # native stacks need to pause the target
    p = spawn(cmd, cpu, "py-spy")
    time.sleep(1.0)  # let it attach
    print(f"    profiling {kind} into {out}", file=sys.stderr)
    return p


def stop_profiler(p: subprocess.Popen[bytes]) -> None:
    """SIGINT makes py-spy write its output before exiting."""
    try:
        os.killpg(p.pid, signal.SIGINT)
        p.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    stop(p)


STATS_FILE = LOG_DIR / "instruments.jsonl"  # siopg bench apps append here on SIGUSR2 (apps/_instruments.py)
os.environ["SIOPG_BENCH_STATS"] = str(STATS_FILE)


def _stat_rows(pid: int) -> list[dict[str, float]]:
    try:
        with open(STATS_FILE) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []
    return [r for r in rows if r.get("pid") == pid]


def instrument_snapshot(pids: list[int], timeout: float = 3.0) -> dict[int, dict[str, float]]:
    """Ask each siopg server (SIGUSR2) for its cumulative instrument counters; {} for a pid
    that did not answer in time (e.g. a Node server, which has none)."""
    seen = {pid: len(_stat_rows(pid)) for pid in pids}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGUSR2)
        except ProcessLookupError:
            pass
    out: dict[int, dict[str, float]] = {}
    deadline = time.monotonic() + timeout
    while len(out) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            rows = _stat_rows(pid)
            if pid not in out and len(rows) > seen[pid]:
                out[pid] = rows[-1]
        time.sleep(0.05)
    return out


def instrument_window(before: dict[int, dict[str, float]], after: dict[int, dict[str, float]]) -> dict[str, float]:
    """Counters over a window, summed over processes (maxima: the largest of any process)."""
    total: dict[str, float] = {}
    for pid, a in after.items():
        b = before.get(pid, {})
        for k, v in a.items():
            if k == "pid":
                continue
            if k.endswith("max_s"):
                total[k] = max(total.get(k, 0.0), v)
            else:
                total[k] = total.get(k, 0.0) + v - b.get(k, 0.0)
    return total


def instrument_line(w: dict[str, float], delivered: int) -> str:
    """One line for the instruments of a siopg run; '' if none were read."""
    if not w:
        return ""
    per_m = 1e6 / delivered if delivered else float("nan")
    lag_avg = w["lag_sum_s"] / w["lag_samples"] * 1e3 if w.get("lag_samples") else float("nan")
    return (f"gc {w['gc_pauses']:.0f} pauses {w['gc_pause_s'] * 1e3:.0f} ms (max {w['gc_pause_max_s'] * 1e3:.1f}); "
            f"deliver {w['deliver_s'] * per_m:.2f} s/1M; flush/write {w['flush_s'] * per_m:.2f} s/1M "
            f"(max batch {w['flush_max_s'] * 1e3:.1f} ms); "
            f"loop lag avg {lag_avg:.2f} ms max {w['lag_max_s'] * 1e3:.1f} ms, "
            f">20 ms x{w['lag_over_20ms']:.0f}")


def loadavg() -> str:
    """1-minute load average: other work on this machine skews every number, so show it."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def add_profile_args(ap: argparse.ArgumentParser, when: str) -> None:
    """--profile DIR and --profile-native, worded alike in every benchmark that offers them."""
    ap.add_argument("--profile", metavar="DIR", help=f"run py-spy on siopg {when}, raw stacks into DIR "
                    "(summarise with bench/profile_summary.py; py-spy perturbs the numbers)")
    ap.add_argument("--profile-native", action="store_true", help="with --profile: include native (C) frames")


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """Placement, timing and output options shared by paced.py and chat.py."""
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between ramp-up and the first emit")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--write-coalesce-ms", type=float, default=0.0,
                    help="siopg's write_coalesce_ms option (0: off, siopg's default)")
    ap.add_argument("--json", help="also write every run to this file")


def parse_servers(ap: argparse.ArgumentParser, value: str) -> list[str]:
    """The comma-separated --servers list; an unknown name is a usage error."""
    servers = [s for s in value.split(",") if s]
    for s in servers:
        if s not in SERVERS:
            ap.error(f"unknown server {s}")
    return servers


def split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def median(xs: list[float]) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def ratio(a: float, b: float) -> str:
    if not b or b != b or a != a:
        return "-"
    return f"{a / b:.2f}x"
