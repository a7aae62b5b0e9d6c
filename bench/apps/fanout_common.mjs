// The broadcast loop the Node bench apps share (node_fanout, node_cluster_fanout,
// node_sticky_cluster), twin of bench/apps/_siopg_fanout_common.py, so the Node side of every
// benchmark runs exactly the same sending logic.
//
// A run: "start" {n, window, rate, procs, pad} -> n "tick" {seq, t} broadcasts -> "done".
// t is the send time in CLOCK_MONOTONIC microseconds (shared with the load clients). The
// window keeps at most `window` ticks in flight ahead of the slowest load process, from its
// "progress" {p, d} reports (d = deliveries counted by load process p).

export function nowUs() {
  const [s, ns] = process.hrtime();
  return s * 1e6 + Math.floor(ns / 1000);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Per-process run state: delivery counts per load process, and at most one run at a time.
export class Fanout {
  constructor() {
    this.delivered = [];
    this.procs = [];
    this.wake = null;
    this.running = false;
    this.onProgress = this.onProgress.bind(this); // handed to io.on("progress", ...)
  }

  // A "progress" {p, d} report: load process p has counted d deliveries.
  onProgress(m) {
    if (m.p >= 0 && m.p < this.delivered.length) this.delivered[m.p] = m.d;
    if (this.wake) {
      const w = this.wake;
      this.wake = null;
      w();
    }
  }

  // Resolves true at the next progress report, false after `ms` without one.
  waitProgress(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  // A new run over load processes holding procs[i] clients each.
  reset(procs) {
    this.procs = procs;
    this.delivered.length = 0;
    for (let p = 0; p < procs.length; p++) this.delivered.push(0);
  }

  // Ticks delivered to every client of the slowest load process, on average.
  minAvg() {
    let m = Infinity;
    for (let p = 0; p < this.procs.length; p++) m = Math.min(m, this.delivered[p] / this.procs[p]);
    return m;
  }

  // emit(0..n-1) as fast as the slowest load process takes them, `window` in flight.
  async windowed(emit, n, window) {
    let windowOn = window > 0;
    let seq = 0;
    while (seq < n) {
      while (seq < n && (!windowOn || seq - this.minAvg() < window)) emit(seq++);
      if (seq < n && !(await this.waitProgress(5000))) {
        console.error("no progress for 5 s: window off");
        windowOn = false;
      }
    }
  }

  // The plain run: n ticks, paced at `rate`/s if rate > 0 else windowed, then "done".
  async runTicks(io, cfg) {
    const n = cfg.n;
    const pad = cfg.pad ? "x".repeat(cfg.pad) : null;
    this.reset(cfg.procs);
    const emit = (seq) => {
      const msg = { seq, t: nowUs() };
      if (pad) msg.pad = pad;
      io.emit("tick", msg);
    };
    if (cfg.rate > 0) {
      const t0 = nowUs();
      let seq = 0;
      while (seq < n) {
        const due = Math.min(n, Math.floor(((nowUs() - t0) * cfg.rate) / 1e6) + 1);
        while (seq < due) emit(seq++);
        await sleep(Math.max(0, (t0 + (seq * 1e6) / cfg.rate - nowUs()) / 1000));
      }
    } else {
      await this.windowed(emit, n, cfg.window);
    }
    io.emit("done", { n });
  }

  // Begin run() unless a run is already going (a second "start" is ignored).
  start(run) {
    if (this.running) return;
    this.running = true;
    run()
      .catch((e) => console.error(e))
      .finally(() => {
        this.running = false;
      });
  }
}
