"""Load and fault figures for `trt-restore serve` and `trt-restore batch` (loopback only).

1. Starts `trt-restore serve` in a subprocess on a free loopback port (quality mode) and,
   for each client count, runs N concurrent clients for M seconds (trt_restore.serve.loadtest):
   p50/p90/p99 latency of the 200 answers, throughput, 429s, and the lost / mixed-up answers
   (each request is tagged and carries one of K distinct photos whose restoration is known).
   Then W clients for S seconds of which every k-th request hangs up right after sending
   (`--walkaway-clients/--walkaway-seconds/--disconnect-every`): the answers of the others must
   stay exact, the service must cancel the abandoned jobs, answer /healthz throughout, and
   its RSS and open files must come back. Then SIGTERMs the server while clients are still
   posting and counts what they got.
2. Runs `trt-restore batch` on F photos, SIGKILLs it after ~1/3 of the outputs exist, reruns
   it, and checks every output exists exactly once and nothing was restored twice.

    .venv/bin/python benchmarks/serve_bench.py --models MODELS [--clients 1,4,8] [--seconds 20] [--ray]

With --ray, also a batch job on Ray Data and the Ray Serve deployment under load, on a local
Ray (ray.init(num_cpus=2)).

Writes benchmarks/results/serve.json and benchmarks/serve.md (override with --json/--markdown).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def start_server(args, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "trt_restore.cli", "serve", "--models", str(args.models), "--port", str(port),
               "--modes", "quality", "--workers", str(args.workers), "--threads", str(args.threads),
               "--max-queue", str(args.max_queue), "--grace", str(args.grace), "--log-level", "warning"]
    # the log goes to a file: a pipe nobody reads fills up and blocks the server's event loop
    server_log = tempfile.NamedTemporaryFile("w+", prefix="serve-bench-", suffix=".log", delete=False)
    server = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT, text=True)
    server.log_path = server_log.name
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if get_json(f"http://127.0.0.1:{port}/readyz", 1)[0] == 200:
                return server
        except OSError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {Path(server.log_path).read_text()}")
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("server not ready within 300 s")


def process_figures(pid: int) -> dict:
    """RSS and open file descriptors of a process on this machine (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    return {"rss_mib": round(rss_kb / 1024, 1), "open_files": len(os.listdir(f"/proc/{pid}/fd"))}


def walkaway_load(args, port: int, server: subprocess.Popen, probes) -> dict:
    """Many clients, a share of them hanging up after sending: nothing lost or mixed up for the
    others, the abandoned jobs cancelled, /healthz answering, RSS and files back after."""
    from trt_restore.serve.loadtest import run_load

    url = f"http://127.0.0.1:{port}"
    before, stats_before = process_figures(server.pid), get_json(f"{url}/readyz")[1]
    figures = run_load(url, probes, clients=args.walkaway_clients, seconds=args.walkaway_seconds,
                       disconnect_every=args.disconnect_every)
    slow_probes = []  # /readyz calls after the load that took over 5 s (a stalled service shows here)
    for _ in range(120):  # let the last cancellations be counted
        started = time.monotonic()
        try:
            stats_after = get_json(f"{url}/readyz")[1]
        except OSError as err:
            slow_probes.append(f"{type(err).__name__} after {time.monotonic() - started:.1f} s")
            continue
        if not stats_after.get("queued") and not stats_after.get("running"):
            break
        time.sleep(0.5)
    after = process_figures(server.pid)
    delta = {k: (stats_after.get(k) or 0) - (stats_before.get(k) or 0) for k in ("completed", "cancelled", "failed")}
    return {**figures, "disconnect_every": args.disconnect_every, "server_before": before, "server_after": after, "server_delta": delta,
            "readyz_failures_after": slow_probes}


def shutdown_under_load(args, port: int, server: subprocess.Popen, probes, delivered_before: int) -> dict:
    """Clients keep posting; SIGTERM after 2 s; every request must get an answer (200, or 503
    once draining) or a refused connection once the listener is closed -- never a dropped one."""
    from trt_restore.serve.loadtest import run_load

    result = {}
    load = threading.Thread(target=lambda: result.update(run_load(
        f"http://127.0.0.1:{port}", probes, clients=args.clients_max, seconds=6, max_backoff=0.2,
        fresh_connections=True)))
    load.start()
    time.sleep(2.0)
    server.send_signal(signal.SIGTERM)
    started = time.monotonic()
    server.wait(timeout=args.grace + 60)
    output = Path(server.log_path).read_text()
    stopped = time.monotonic() - started
    load.join()
    kinds = dict(result.get("lost_by_kind", {}))
    refused = kinds.pop("ConnectionRefusedError", 0)
    # every photo the server restored must have reached a client: the server's own count
    # (its drain log) equals the 200 answers of all phases; then a connection reset at the
    # moment the listener closed carried a request the server never read (nothing was lost)
    match = re.search(r"drained: (\d+) photos completed", output)
    completed = int(match.group(1)) if match else None
    delivered = delivered_before + (result.get("ok") or 0)
    resets = kinds.pop("ConnectionResetError", 0) if completed == delivered else 0
    return {"sent": result.get("sent"), "ok": result.get("ok"), "rejected_503_429": result.get("rejected_429_503"),
            "refused_after_close": refused, "reset_unread_at_close": resets,
            "server_completed": completed, "delivered_200": delivered,
            "dropped_or_wrong": sum(kinds.values()) + result.get("mixed_up", 0) + result.get("error_status", 0)
            + (0 if completed == delivered else 1), "dropped_by_kind": kinds,
            "stop_seconds": round(stopped, 2), "exit_code": server.returncode,
            "drain_log": [line for line in output.splitlines() if "drained" in line]}


def batch_fault(args, work: Path) -> dict:
    """Kill a batch job mid-run, rerun it, check exactly-once outputs."""
    photos = work / "in"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(args.batch_files):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / f"scan_{k:04d}.png")
    out = work / "out"
    command = [sys.executable, "-m", "trt_restore.cli", "batch", str(photos), "-o", str(out), "--models",
               str(args.models), "--threads", str(args.threads)]
    started = time.monotonic()
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = max(1, args.batch_files // 3)
    while len(list(out.glob("scan_*.png"))) < target and job.poll() is None:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    first_s = time.monotonic() - started
    before = len(list(out.glob("scan_*.png")))
    temps = len([p for p in out.glob(".*.tmp")])
    started = time.monotonic()
    rerun = subprocess.run(command, capture_output=True, text=True)
    rerun_s = time.monotonic() - started
    outputs = sorted(p.name for p in out.glob("scan_*.png"))
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()
               if line.startswith("{") and line.rstrip().endswith("}")]
    ok = collections.Counter(r["input"] for r in records if r["status"] == "ok")
    accounted = set(ok) | {r["input"] for r in records if r["status"] == "skipped"}
    return {"files": args.batch_files, "outputs_when_killed": before, "temp_files_left_by_kill": temps,
            "killed_after_s": round(first_s, 2), "rerun_exit_code": rerun.returncode, "rerun_s": round(rerun_s, 2),
            "rerun_summary": rerun.stderr.strip().splitlines()[-1] if rerun.stderr.strip() else "",
            "outputs_after_rerun": len(outputs), "expected_outputs": args.batch_files,
            "temp_files_after_rerun": len(list(out.glob(".*.tmp"))),
            "restored_twice": sum(1 for v in ok.values() if v > 1),
            "inputs_without_record": args.batch_files - len(accounted)}


def ray_figures(args, probes, work: Path) -> dict:
    """On a local Ray (num_cpus=2): a batch job on Ray Data with 2 actors, then the service
    as a Ray Serve deployment with 2 replicas under load."""
    import ray
    from ray import serve

    from trt_restore.serve.app import ServeConfig
    from trt_restore.serve.batch import RestoreOptions, run_batch
    from trt_restore.serve.engine import EngineConfig
    from trt_restore.serve.loadtest import run_load
    from trt_restore.serve.ray_serve import build_application

    started = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    figures = {"ray_version": ray.__version__, "init_s": round(time.monotonic() - started, 2)}
    try:
        photos = work / "ray_in"
        photos.mkdir()
        rng = np.random.default_rng(1)
        for k in range(args.batch_files):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / f"scan_{k:04d}.png")
        options = RestoreOptions(models=str(Path(args.models).resolve()), threads=1)
        summary = run_batch([str(photos)], work / "ray_out", options, use_ray=True, workers=2, batch_size=2)
        rerun = run_batch([str(photos)], work / "ray_out", options, use_ray=True, workers=2, batch_size=2)
        figures["batch"] = {"files": summary.total, "restored": summary.restored, "failed": summary.failed,
                            "seconds": round(summary.seconds, 2),
                            "files_per_s": round(summary.total / summary.seconds, 2),
                            "rerun_skipped": rerun.skipped, "rerun_seconds": round(rerun.seconds, 2)}
        port = free_port()
        config = ServeConfig(engine=EngineConfig(models=args.models, backend="ort", modes=("quality",), threads=1,
                                                 max_queue=args.max_queue), grace=10)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        started = time.monotonic()
        serve.run(build_application(config, replicas=2, replica_cpus=1), name="trt_restore", route_prefix="/")
        figures["serve_deploy_s"] = round(time.monotonic() - started, 2)
        load = run_load(f"http://127.0.0.1:{port}", probes, clients=8, seconds=args.seconds)
        figures["serve_load"] = load
        serve.shutdown()
    finally:
        ray.shutdown()
    return figures


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# Serving and batch: load and fault figures",
        "",
        f"Produced by `benchmarks/serve_bench.py` ({report['date']}); raw numbers in "
        "`benchmarks/results/serve.json`.",
        "",
        f"Machine: {env['cpus']} CPU cores ({env['machine']}), load average {env['loadavg_start']} at the start "
        "(the machine is shared with other jobs: latencies are indicative, the correctness counts are exact). "
        f"Service: `trt-restore serve --modes quality --workers {env['workers']} --threads {env['threads']} "
        f"--max-queue {env['max_queue']}`, onnxruntime CPU, synthetic weights (the output pixels are meaningless; "
        f"the work per photo is the real one). Photos: {env['probes']} distinct crops of 48–60 × 56–68 px, "
        "each request tagged; every 200 answer is compared with that photo's restoration computed in-process.",
        "",
        "## Concurrent clients",
        "",
        "| clients | seconds | requests | 200 | 429/503 | lost | mixed up | other errors | p50 (s) | p90 (s) "
        "| p99 (s) | max (s) | answers/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["load"]:
        lat = row["latency_s"]
        fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {row['clients']} | {row['seconds']} | {row['sent']} | {row['ok']} | "
                     f"{row['rejected_429_503']} | {row['lost']} | {row['mixed_up']} | {row['error_status']} | "
                     f"{fmt(lat['p50'])} | {fmt(lat['p90'])} | {fmt(lat['p99'])} | {fmt(lat['max'])} | "
                     f"{row['throughput_per_s']} |")
    if report.get("walkaway"):
        lines += walkaway_markdown(report["walkaway"])
    stop = report["shutdown"]
    drain = "; ".join(line.split(" WARNING ")[-1] for line in stop["drain_log"])
    batch = report["batch"]
    lines += [
        "",
        "Latency is client-side (upload, queue, restore, PNG encode, download). With more clients than the "
        "queue holds, the extra requests get 429 + Retry-After at once instead of waiting; clients retry "
        "after it (capped at 2 s).",
        "",
        "## SIGTERM under load",
        "",
        f"{report['env_clients_max']} clients posting; SIGTERM after 2 s: {stop['sent']} requests, {stop['ok']} "
        f"answered 200, {stop['rejected_503_429']} answered 503/429 (draining; the server keeps listening until "
        f"drained), {stop['refused_after_close']} connections refused after the listener closed, "
        f"{stop['reset_unread_at_close']} reset as the listener closed (requests the server had not read: it "
        f"completed {stop['server_completed']} photos in all and clients received {stop['delivered_200']} 200 "
        f"answers), **{stop['dropped_or_wrong']} dropped or wrong**; the "
        f"server stopped {stop['stop_seconds']} s after the signal (exit code {stop['exit_code']}: uvicorn "
        f"re-raises the signal after its graceful shutdown). Server log: {drain}",
        "",
        "## Batch job killed mid-run",
        "",
        f"`trt-restore batch` on {batch['files']} photos, SIGKILLed after {batch['killed_after_s']} s with "
        f"{batch['outputs_when_killed']} outputs written ({batch['temp_files_left_by_kill']} temp files left by the "
        f"kill); rerun: exit code {batch['rerun_exit_code']} in {batch['rerun_s']} s (`{batch['rerun_summary']}`). "
        f"After the rerun: {batch['outputs_after_rerun']}/{batch['expected_outputs']} outputs, "
        f"{batch['temp_files_after_rerun']} temp files, {batch['restored_twice']} photos restored twice, "
        f"{batch['inputs_without_record']} inputs without a manifest record.",
        "",
    ]
    if report.get("ray"):
        ray_report = report["ray"]
        batch, load = ray_report["batch"], ray_report["serve_load"]
        lat = load["latency_s"]
        lines += [
            "## On a local Ray (`ray.init(num_cpus=2)`, the same 2 cores)",
            "",
            f"Ray {ray_report['ray_version']}, start-up {ray_report['init_s']} s. `batch --ray` with 2 Ray Data actors "
            f"(1 CPU, 1 onnxruntime thread each): {batch['files']} photos of 64 × 64 in {batch['seconds']} s "
            f"({batch['files_per_s']} files/s, actor start-up included), {batch['failed']} failed; the rerun skipped "
            f"{batch['rerun_skipped']} in {batch['rerun_seconds']} s.",
            "",
            f"Ray Serve, 2 replicas (1 CPU each), deployed and warm in {ray_report['serve_deploy_s']} s; 8 clients "
            f"for {load['seconds']} s: {load['sent']} requests, {load['ok']} answered 200, "
            f"{load['rejected_429_503']} 429/503, **{load['lost']} lost, {load['mixed_up']} mixed up**; "
            f"p50 {lat['p50']:.3f} s, p99 {lat['p99']:.3f} s, {load['throughput_per_s']} answers/s; "
            "answers per replica: "
            f"{', '.join(str(v) for v in load['answered_by'].values())}.",
            "",
            "Scale-out cannot speed anything up on 2 shared cores; these runs show that the same code runs and stays "
            "correct on Ray. On a cluster, replicas and actors scale with the CPUs/GPUs given to them.",
            "",
        ]
    return "\n".join(lines)


def walkaway_markdown(row: dict) -> list[str]:
    lat, health = row["latency_s"], row["healthz"]
    before, after, delta = row["server_before"], row["server_after"], row["server_delta"]
    return [
        "",
        "## Clients that walk away",
        "",
        f"{row['clients']} clients for {row['seconds']} s; every {row['disconnect_every']}th request of each client "
        f"hangs up 50 ms after sending the photo: {row['sent']} requests, {row['ok']} answered "
        f"200, {row['rejected_429_503']} 429/503, {row['abandoned']} abandoned, **{row['lost']} lost, "
        f"{row['mixed_up']} mixed up, {row['error_status']} other errors, {row['unaccounted']} unaccounted**. "
        f"The service completed {delta['completed']} photos and cancelled {delta['cancelled']} jobs of clients "
        f"that had gone ({delta['failed']} failed); the other abandoned requests had been answered 429 (queue full) "
        f"before the client hung up, so no job was ever made for them. p50 {lat['p50'] or 0:.3f} s, p99 {lat['p99'] or 0:.3f} s.",
        "",
        f"`/healthz` timed every 0.25 s throughout: {health['probes']} probes, {health['failed']} failed, "
        f"p50 {health['p50_ms']} ms, p99 {health['p99_ms']} ms, max {health['max_ms']} ms. Server RSS "
        f"{before['rss_mib']} → {after['rss_mib']} MiB, open files {before['open_files']} → {after['open_files']}; "
        f"/readyz calls after the load that failed within 5 s: {len(row['readyz_failures_after'])}.",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=os.environ.get("TRT_RESTORE_MODELS"), required=False)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)  # onnxruntime threads per worker
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--grace", type=float, default=10)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--walkaway-clients", type=int, default=32, help="clients of the walk-away phase (0: skip)")
    parser.add_argument("--walkaway-seconds", type=float, default=60)
    parser.add_argument("--disconnect-every", type=int, default=4, help="every k-th request hangs up after sending")
    parser.add_argument("--batch-files", type=int, default=30)
    parser.add_argument("--ray", action="store_true", help="also run the Ray Data / Ray Serve figures")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "serve.json")
    parser.add_argument("--markdown", type=Path, default=REPO / "benchmarks" / "serve.md")
    args = parser.parse_args()
    if args.models is None:
        parser.error("--models (or TRT_RESTORE_MODELS) is required: a folder written by `trt-restore export`")
    clients = [int(c) for c in args.clients.split(",")]
    args.clients_max = max(clients)

    from trt_restore.serve.loadtest import make_probes, run_load

    source = np.asarray(Image.open(REPO / "tests" / "data" / "old_a.png").convert("RGB"))
    probes = make_probes(args.models, args.probes, source, threads=args.threads)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "env_clients_max": args.clients_max,
              "environment": {"cpus": os.cpu_count(), "machine": platform.machine(),
                              "loadavg_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
                              "workers": args.workers, "threads": args.threads, "max_queue": args.max_queue,
                              "probes": args.probes, "python": platform.python_version()},
              "load": []}
    port = free_port()
    server = start_server(args, port)
    try:
        for count in clients:
            figures = run_load(f"http://127.0.0.1:{port}", probes, clients=count, seconds=args.seconds)
            print(json.dumps({k: figures[k] for k in ("clients", "sent", "ok", "rejected_429_503", "lost",
                                                      "mixed_up", "latency_s")}), flush=True)
            report["load"].append(figures)
        if args.walkaway_clients:
            report["walkaway"] = walkaway_load(args, port, server, probes)
            print(json.dumps({k: report["walkaway"][k] for k in ("clients", "sent", "ok", "abandoned", "lost",
                                                                 "mixed_up", "healthz", "server_delta")}), flush=True)
        report["server_stats"] = get_json(f"http://127.0.0.1:{port}/readyz")[1]
        report["shutdown"] = shutdown_under_load(args, port, server, probes, sum(r["ok"] for r in report["load"])
                                                 + report.get("walkaway", {}).get("ok", 0))
        print(json.dumps(report["shutdown"]), flush=True)
    finally:
        if server.poll() is None:
            server.kill()
    with tempfile.TemporaryDirectory() as work:
        report["batch"] = batch_fault(args, Path(work))
        print(json.dumps(report["batch"]), flush=True)
        if args.ray:
            report["ray"] = ray_figures(args, probes, Path(work))
            print(json.dumps({k: v for k, v in report["ray"].items() if k != "serve_load"}), flush=True)
    report["environment"]["loadavg_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    args.markdown.write_text(markdown(report))
    problems = sum(r["lost"] + r["mixed_up"] + r["error_status"] for r in report["load"] + [report.get("walkaway")]
                   if r)
    problems += report["shutdown"]["dropped_or_wrong"] + report["batch"]["restored_twice"]
    problems += abs(report["batch"]["outputs_after_rerun"] - report["batch"]["expected_outputs"])
    if report.get("ray"):
        problems += report["ray"]["serve_load"]["lost"] + report["ray"]["serve_load"]["mixed_up"]
        problems += report["ray"]["batch"]["failed"]
    print(f"wrote {args.json} and {args.markdown}; problems: {problems}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
