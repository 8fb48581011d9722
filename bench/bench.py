#!/usr/bin/env python3
"""Benchmark driver: runs the release binary against the embedded fake API (each in its own
process, on loopback), side by side with wrk and the Python peers, and prints a markdown table.

Usage: bench/run.sh [--quick] [--only=storm,memory,...]
(run.sh builds the binary and installs wrk and the Python deps)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "playment-export")
PY = os.environ.get("BENCH_PYTHON", sys.executable)
KEY = "demo-key"
QUICK = "--quick" in sys.argv
WORK = tempfile.mkdtemp(prefix="playment-bench-")
ROWS = []


def row(scenario, figure, target, note=""):
    ROWS.append((scenario, figure, target, note))
    print(f"  {scenario}: {figure} (target {target}) {note}", file=sys.stderr, flush=True)


class Fake:
    """`playment-export fake-api` in its own process."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([BIN, "fake-api", "--port", "0", *args], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.base = re.search(r"fake API at (\S+)", line).group(1).rstrip("/")

    def get(self, path):
        req = urllib.request.Request(self.base + path, headers={"x-api-key": KEY})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def counters(self):
        return self.get("/admin/counters")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def measured(cmd, env=None):
    """Run `cmd`; return (exit code, stdout, wall seconds, cpu seconds, peak RSS in MiB)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    return os.waitstatus_to_exitcode(status), out, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def export(fake, out, *args, command="export"):
    env = dict(os.environ, PLAYMENT_API_KEY=KEY)
    cmd = [BIN, command, "--project", "demo-project", "--base-url", fake.base, "--out", out, "--json", "--quiet", *args]
    code, stdout, wall, cpu, rss = measured(cmd, env)
    summary = json.loads(stdout) if stdout.strip() else {}
    return code, summary, wall, cpu, rss


def python_peer(script, fake, out, *args):
    env = dict(os.environ, PLAYMENT_API_KEY=KEY)
    cmd = [PY, os.path.join(ROOT, "bench", "python", script), "--base-url", fake.base, "--project", "demo-project",
           "--out", out, *args]
    code, _, wall, cpu, rss = measured(cmd, env)
    requests = fake.counters()["api_requests"]
    return code, requests, wall, cpu, rss


def out_dir(name):
    path = os.path.join(WORK, name)
    shutil.rmtree(path, ignore_errors=True)
    return path


def latency_bound():
    jobs = 3000 if QUICK else 10000
    fake = Fake("--jobs", str(jobs), "--batches", "20", "--latency-ms", "40")
    code, s, wall, _, _ = export(fake, out_dir("a"), "--concurrency", "32", "--rps", "0")
    fake.stop()
    rps = s["requests"] / s["elapsed_secs"]
    row("(a) latency-bound, 40 ms, C=32", f"{rps:.0f} req/s = {rps / 800:.2f} x C/L (800)", ">= 0.85 x C/L",
        f"{s['requests']} requests, exit {code}")
    return rps


def throttled_run(name, jobs, server_rps, client_rps, target, out):
    """A crawl against a server-side limit; returns the summary."""
    fake = Fake("--jobs", str(jobs), "--batches", "10", "--server-rps", str(server_rps))
    code, s, _, _, _ = export(fake, out_dir(out), "--concurrency", "16", "--rps", str(client_rps))
    fake.stop()
    ok = (s["requests"] - s["throttled"]) / s["elapsed_secs"]
    share = 100 * s["throttled"] / s["requests"]
    adapted = f"rate at the end {s['rate_limit']:.1f}, lowest {s['lowest_rate']:.1f}; " if s.get("lowest_rate") else ""
    row(name, f"{ok:.1f} ok-req/s = {ok / server_rps:.2f} x {server_rps}; {share:.1f}% 429", target, f"{adapted}exit {code}")


def rate_bound():
    throttled_run("(b) rate-bound, --rps 100 vs server 100", 1000 if QUICK else 3000, 100, 100,
                  ">= 0.9 x R, <= 2% 429", "b")


def unknown_limit():
    throttled_run("(c) unknown limit, server 40, --rps 200", 800 if QUICK else 2000, 40, 200,
                  ">= 0.7 x 40, <= 25% throttled", "c")


def first_job_path(fake):
    details = fake.get("/v1/projects/demo-project/details")["data"]
    for batch in details["batches"]:
        page = fake.get(f"/v1/projects/demo-project/batch/{batch['id']}?page_token=")["data"]
        if page["jobs"]:
            return f"/v1/projects/demo-project/jobs/{page['jobs'][0]['id']}"
    raise RuntimeError("no job")


def cpu_bound():
    jobs = 20000 if QUICK else 50000
    fake = Fake("--jobs", str(jobs), "--batches", "50")
    code, s, wall, cpu, rss = export(fake, out_dir("d"), "--concurrency", "32", "--rps", "0")
    ours_rps = s["requests"] / s["elapsed_secs"]
    ours_us = 1e6 * cpu / s["requests"]
    wrk_rps = None
    if shutil.which("wrk"):
        url = fake.base + first_job_path(fake)
        out = subprocess.run(["wrk", "-t1", "-c32", "-d10s", "-H", f"x-api-key: {KEY}", url],
                             capture_output=True, text=True).stdout
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        wrk_rps = float(m.group(1)) if m else None
    fake.stop()
    if wrk_rps:
        row("(d) CPU-bound, zero latency, C=32", f"{ours_rps:.0f} req/s = {ours_rps / wrk_rps:.2f} x wrk ({wrk_rps:.0f})",
            ">= 0.5 x wrk", f"{ours_us:.0f} us CPU/request; {s['requests']} requests, exit {code}")
    else:
        row("(d) CPU-bound, zero latency, C=32", f"{ours_rps:.0f} req/s (wrk not available)", ">= 0.5 x wrk",
            f"{ours_us:.0f} us CPU/request")
    # The Python peer on a fresh fake of the same project.
    fake = Fake("--jobs", str(jobs), "--batches", "50")
    pcode, preq, pwall, pcpu, prss = python_peer("aio_export.py", fake, out_dir("d-py"), "--concurrency", "32")
    fake.stop()
    py_us = 1e6 * pcpu / preq
    row("(d) CPU per request vs Python asyncio+aiohttp", f"{ours_us:.0f} us vs {py_us:.0f} us = {ours_us / py_us:.2f} x",
        "<= 0.2 x Python", f"Python: {preq / pwall:.0f} req/s, exit {pcode}; RSS {rss:.0f} MiB vs {prss:.0f} MiB")
    return ours_us, rss, prss


def memory():
    sizes = [10_000, 100_000] if QUICK else [10_000, 100_000, 1_000_000]
    rss = {}
    for n in sizes:
        fake = Fake("--jobs", str(n), "--batches", str(max(20, n // 2000)))
        out = out_dir(f"e-{n}")
        code, s, wall, cpu, peak = export(fake, out, "--concurrency", "32", "--rps", "0")
        rss[n] = peak
        row(f"(e) peak RSS at {n:,} jobs", f"{peak:.1f} MiB", "100k: <= 64 MiB and <= 1.5 x 10k; 1M completes",
            f"{wall:.1f} s, {s['requests']} requests, {1e6 * cpu / s['requests']:.0f} us CPU/request, exit {code}")
        if n == 100_000:
            # (g) resume: a no-op rerun over the finished 100k export.
            rcode, rs, rwall, _, _ = export(fake, out, "--concurrency", "32", "--rps", "0")
            noop = (f"{rwall:.2f} s wall, {rs['requests']} request(s)", f"exit {rcode}")
        fake.stop()
    if 100_000 in rss:
        row("(e) RSS 100k / 10k", f"{rss[100_000] / rss[10_000]:.2f} x", "<= 1.5 x")
        row("(g) no-op rerun of a 100k-job export", noop[0], "fast; 1 request", noop[1])


def resume_after_kill():
    jobs = 20_000 if QUICK else 100_000
    fake = Fake("--jobs", str(jobs), "--batches", "50", "--latency-ms", "1")
    out = out_dir("g2")
    env = dict(os.environ, PLAYMENT_API_KEY=KEY)
    cmd = [BIN, "export", "--project", "demo-project", "--base-url", fake.base, "--out", out, "--quiet",
           "--concurrency", "32", "--rps", "0"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    while fake.counters()["jobs"] < jobs // 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    killed_at = fake.counters()["api_requests"]
    code, s, wall, _, _ = export(fake, out, "--concurrency", "32", "--rps", "0")
    total = fake.counters()["api_requests"]
    fake.stop()
    # The fewest requests for the whole export: one clean run of the same project.
    fake = Fake("--jobs", str(jobs), "--batches", "50")
    _, clean, _, _, _ = export(fake, out_dir("g2-clean"), "--concurrency", "32", "--rps", "0")
    fake.stop()
    extra = total - clean["requests"]
    row("(g) kill -9 halfway, then resume", f"{extra} requests more than one clean run ({total} vs {clean['requests']})",
        "only what is missing", f"killed after {killed_at} requests; the resume made {s['requests']}, exit {code}")


# 5% 5xx, 2% HTTP-400 "try again", 1% 200 with success false, 2% 429, 1% resets, 1% truncated
# bodies, 1% HTML 502 pages, 0.1% hangs.
STORM = ["--fault", "5xx=0.05", "--fault", "400=0.02", "--fault", "false200=0.01", "--fault", "429=0.02",
         "--fault", "reset=0.01", "--fault", "truncate=0.01", "--fault", "html=0.01", "--fault", "hang=0.001"]


def storm():
    jobs = 1000 if QUICK else 3000
    fake = Fake("--jobs", str(jobs), "--batches", "10")
    _, clean, cwall, _, _ = export(fake, out_dir("h-clean"), "--concurrency", "32", "--rps", "0", "--timeout", "2")
    fake.stop()
    for retry_after in ("1", "0"):
        fake = Fake("--jobs", str(jobs), "--batches", "10", "--retry-after", retry_after, *STORM)
        out = out_dir(f"h-{retry_after}")
        code, s, wall, _, _ = export(fake, out, "--concurrency", "32", "--rps", "0", "--timeout", "2")
        faults = fake.counters()["faults"]
        fake.stop()
        verify = subprocess.run([BIN, "verify", "--out", out], capture_output=True).returncode
        row(f"(h) fault storm, Retry-After {retry_after} s",
            f"{faults} faults injected, {s['retries']} retries, {wall:.1f} s vs {cwall:.1f} s fault-free",
            "exact output", f"{jobs} jobs, {s['requests']} requests vs {clean['requests']}; exit {code}, verify exit {verify}")


def sync_figures():
    jobs = 5000 if QUICK else 20000
    fake = Fake("--jobs", str(jobs), "--batches", "40")
    out = out_dir("f")
    export(fake, out, "--concurrency", "32", "--rps", "0")
    code, s, wall, _, _ = export(fake, out, "--concurrency", "32", "--rps", "0", command="sync")
    row("(f) idle sync", f"{s['requests']} request(s), {wall:.2f} s", "1 request (the minimum)", f"exit {code}")
    minimum = fake.get("/admin/advance")["minimum_sync"]
    code, s, wall, _, _ = export(fake, out, "--concurrency", "32", "--rps", "0", command="sync")
    row("(f) sync after changes", f"{s['requests']} requests vs minimum {minimum['requests']}",
        "the minimum", f"{s['batches_changed']} changed, {s['batches_new']} new, {s['batches_removed']} removed batches; "
        f"{s['jobs_new']} new, {s['jobs_changed']} changed, {s['jobs_removed']} removed jobs; exit {code}")
    fake.stop()


def reference():
    jobs = 200 if QUICK else 500
    fake = Fake("--jobs", str(jobs), "--batches", "5", "--latency-ms", "40")
    rcode, rreq, rwall, _, _ = python_peer("reference.py", fake, out_dir("ref"))
    fake.stop()
    fake = Fake("--jobs", str(jobs), "--batches", "5", "--latency-ms", "40")
    code, s, wall, _, _ = export(fake, out_dir("ref-ours"), "--concurrency", "32", "--rps", "0")
    fake.stop()
    row("headline: vs the docs' reference script, 40 ms", f"{rwall / wall:.1f} x faster ({wall:.1f} s vs {rwall:.1f} s)",
        "-", f"{jobs} jobs; reference exit {rcode}, ours exit {code} (--concurrency 32 --rps 0)")


def main():
    print(f"benchmarks in {WORK}{' (quick)' if QUICK else ''}", file=sys.stderr)
    steps = (latency_bound, rate_bound, unknown_limit, cpu_bound, memory, resume_after_kill, sync_figures, storm, reference)
    only = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--only=")), None)
    for step in steps:
        if only is None or step.__name__ in only:
            step()
    print("| scenario | measured | target | notes |")
    print("| --- | --- | --- | --- |")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
