"""Peak RSS and wall time, mode by mode: the original's global stage vs `trt-restore restore`.

Both sides run on the original's own test photos (`test_images/old` for quality,
`test_images/old_w_scratch` for scratch and HR) with the same synthetic weights: the original
loads them from its `Global/checkpoints/...` layout through its own loaders, trt-restore runs
the ONNX graphs exported from the same files on onnxruntime. Each side is a fresh child
process per mode (the original: `detection.py` then `test.py`, as its `run.py` chains them;
its peak is the larger of the two, its time the sum), with the same thread count, and the two
sides alternate (original first on even repeats, ours first on odd ones) so that load from
other work on the machine hits both alike. Peak RSS is each child's `ru_maxrss` (os.wait4).
Faces are left out on both sides: the original's face stage needs dlib's landmark model,
which this machine does not have.

Setup (by hand, once): the original's code needs torchvision (and its detection script pyyaml
and easydict), which the project does not depend on; install them beside the project's torch
without touching the project's venv (the CUDA torchvision wheel's C ops cannot load beside a
CPU torch and are not needed; the Synchronized-BatchNorm clone its README asks for is replaced
by plain DataParallel, whose result the original discards: see the two helpers below):

    pip install --no-deps --target /tmp/tv "torchvision==0.28.*" pyyaml easydict
    python benchmarks/memory_vs_original.py --torchvision /tmp/tv --work /tmp/mvo [--repeats 2]

The work folder gets the original's code and photos (from the mirror of its repository),
synthetic checkpoints in its layout, and (unless --models is given) our export of them.
Writes benchmarks/results/memory_vs_original.{json,md,png} (~25 min for 2 repeats on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MIRROR = Path("/work/.mirror/microsoft+Bringing-Old-Photos-Back-to-Life/repo")
GLOBAL_TAGS = ("VAE_A_quality", "VAE_B_quality", "VAE_B_scratch", "mapping_quality", "mapping_scratch",
               "mapping_Patch_Attention", "detection")
PHOTOS = {"quality": "old", "scratch": "old_w_scratch", "hr": "old_w_scratch"}
GIB = 1 << 30


# ---- child side: the original's scripts, run unmodified in this process ----

def _import_torchvision():
    """Import torchvision for the original's scripts. A CUDA torchvision wheel beside a CPU torch
    cannot load its C ops, and its import then dies registering fake kernels for two of them;
    declaring their schemas lets the pure-Python parts (transforms, save_image: all that the
    original's global stage uses) import. Returns that library (keep it alive) or None."""
    import torch

    try:
        import torchvision
        return None
    except RuntimeError:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision  # noqa: F401

    return library


def _sync_batchnorm_stand_in(folder: Path) -> None:
    """The original's README has users clone a third-party Synchronized-BatchNorm repository into
    detection_models/; its UNet only imports DataParallelWithCallback (a DataParallel subclass)
    and discards the wrapped module (`self = DataParallelWithCallback(self)` inside __init__), so
    plain DataParallel stands in for it when that clone is absent."""
    import types

    import torch

    if (folder / "detection_models" / "sync_batchnorm").is_dir():
        return
    module = types.ModuleType("detection_models.sync_batchnorm")
    module.DataParallelWithCallback = torch.nn.DataParallel
    sys.modules[module.__name__] = module


def run_original_script(root: Path, script: str, args: list[str], threads: int) -> None:
    """Run Global/<script> of the original as `python <script> args` from its own folder."""
    import torch

    torch.set_num_threads(threads)
    library = _import_torchvision()  # noqa: F841 (its schemas live as long as this object)
    folder = root / "Global"
    _sync_batchnorm_stand_in(folder)
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    sys.argv = [script, *args]
    runpy.run_path(str(folder / script), run_name="__main__")


def session_loads(models: Path, graphs: list[str], threads: int) -> list[dict]:
    """Per graph, in this (fresh) process: load seconds, and the resident growth right after
    onnxruntime's load and after freed heap went back to the OS (what the backend does)."""
    import onnxruntime as ort
    from trt_restore.backends.heap import release_free_heap
    from trt_restore.backends.onnxruntime_backend import OrtBackend

    def resident() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    backend, rows = OrtBackend(models, threads=threads), []
    for graph in graphs:
        options, path = backend.session_options(plain=True), backend.graph_file(graph)
        start, before = time.perf_counter(), resident()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        seconds, loaded = time.perf_counter() - start, resident()
        release_free_heap()
        rows.append({"graph": graph, "file_mib": round(path.stat().st_size / 2**20, 1), "load_s": round(seconds, 2),
                     "resident_after_load_mib": round((loaded - before) / 2**20, 1),
                     "resident_after_trim_mib": round((resident() - before) / 2**20, 1)})
        del session
        release_free_heap()
    return rows


# ---- parent side ----

def original_steps(root: Path, mode: str, out: Path) -> list[list[str]]:
    """The original's stage-1 commands for `mode`, as run.py builds them (CPU: gpu -1)."""
    photos = str(root / "test_images" / PHOTOS[mode])
    if mode == "quality":
        return [["test.py", "--test_mode", "Full", "--Quality_restore", "--test_input", photos,
                 "--outputs_dir", str(out), "--gpu_ids", "-1"]]
    masks = out / "masks"
    hr = ["--HR"] if mode == "hr" else []
    return [["detection.py", "--test_path", photos, "--output_dir", str(masks), "--input_size", "full_size",
             "--GPU", "-1"],
            ["test.py", "--Scratch_and_Quality_restore", "--test_input", str(masks / "input"), "--test_mask",
             str(masks / "mask"), "--outputs_dir", str(out), "--gpu_ids", "-1", *hr]]


def ours_command(root: Path, mode: str, out: Path, models: Path, threads: int) -> list[str]:
    flags = {"quality": [], "scratch": ["--scratch"], "hr": ["--scratch", "--hr"]}[mode]
    cli = Path(sys.executable).with_name("trt-restore")
    return [str(cli), "restore", str(root / "test_images" / PHOTOS[mode]), "-o", str(out), "--backend", "ort",
            "--threads", str(threads), "--no-faces", "--overwrite", "-m", str(models), *flags]


def measure(command: list[str], env: dict, log: Path) -> dict:
    """Run one child; its wall time and its own peak RSS (ru_maxrss of wait4, in bytes)."""
    start = time.perf_counter()
    with open(log, "ab") as sink:
        sink.write(("$ " + " ".join(command) + "\n").encode())
        sink.flush()
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {child.returncode}; see {log}")
    return {"seconds": round(seconds, 2), "peak_rss_bytes": usage.ru_maxrss * 1024}


def run_original(root: Path, mode: str, out: Path, threads: int, torchvision: str | None, log: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if torchvision:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [torchvision, env.get("PYTHONPATH")]))
    steps = []
    for step in original_steps(root, mode, out):
        command = [sys.executable, __file__, "original", str(root), str(threads), *step]
        steps.append({"script": step[0], **measure(command, env, log)})
    return {"seconds": round(sum(s["seconds"] for s in steps), 2),
            "peak_rss_bytes": max(s["peak_rss_bytes"] for s in steps), "steps": steps}


def run_ours(root: Path, mode: str, out: Path, models: Path, threads: int, log: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return measure(ours_command(root, mode, out, models, threads), env, log)


def prepare(work: Path, models: Path | None) -> tuple[Path, Path]:
    """The original's code and photos, synthetic checkpoints in its layout, our export of them."""
    root = work / "original"
    if not (root / "Global" / "test.py").is_file():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(MIRROR), "archive", "HEAD", "Global", "test_images"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    cli = str(Path(sys.executable).with_name("trt-restore"))
    if not (root / "Global" / "checkpoints" / "detection" / "FT_Epoch_latest.pt").is_file():
        tags = [a for tag in GLOBAL_TAGS for a in ("--tag", tag)]
        subprocess.run([cli, "synthetic-weights", str(root), *tags], check=True)
    models = models or work / "models"
    if not (models / "models.json").is_file():
        subprocess.run([cli, "export", "--weights", str(root), "-o", str(models), "--no-faces"], check=True)
    return root, models


def summary(rows: list[dict]) -> dict:
    """Per mode and side: the largest peak and the median time over the repeats."""
    out: dict = {}
    for row in rows:
        entry = out.setdefault(row["mode"], {}).setdefault(row["side"], {"peaks": [], "times": []})
        entry["peaks"].append(row["peak_rss_bytes"])
        entry["times"].append(row["seconds"])
    for sides in out.values():
        for entry in sides.values():
            entry["peak_rss_gib"] = round(max(entry.pop("peaks")) / GIB, 3)
            entry["median_s"] = round(statistics.median(entry["times"]), 1)
        if "original" in sides and "trt-restore" in sides:
            sides["peak_ratio"] = round(sides["trt-restore"]["peak_rss_gib"] / sides["original"]["peak_rss_gib"], 2)
    return out


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = ["# Peak memory vs the original, mode by mode", "",
             (f"The original's global stage (its `detection.py` + `test.py`, PyTorch {env['torch']}, its own loaders "
             f"and modules) vs `trt-restore restore --backend ort` (onnxruntime {env['onnxruntime']}), on the "
             f"original's test photos, synthetic weights, {report['threads']} threads, faces off on both sides, "
             f"{report['repeats']} interleaved repeat(s). Peak RSS is each child process's `ru_maxrss` (the "
             f"original: the larger of its two processes), the largest over the repeats; time is wall time of the "
             f"whole folder, median of the repeats."),
             "", "| mode | photos | original peak | trt-restore peak | ratio | original time | trt-restore time |",
             "|---|---|---|---|---|---|---|"]
    for mode, sides in report["summary"].items():
        orig, ours = sides.get("original", {}), sides.get("trt-restore", {})
        lines.append(f"| {mode} | {report['photos'][mode]} | {orig.get('peak_rss_gib', '—')} GiB | "
                     f"{ours.get('peak_rss_gib', '—')} GiB | {sides.get('peak_ratio', '—')} | "
                     f"{orig.get('median_s', '—')} s | {ours.get('median_s', '—')} s |")
    if report.get("history"):
        lines += ["", ("Step by step (trt-restore side only, same machine and photos; earlier runs of this script, "
                       "peak RSS in GiB; each row adds one change):"), "",
                  "| code | quality | scratch | hr |", "|---|---|---|---|"]
        for step in report["history"]:
            peaks = step["peak_rss_gib"]
            lines.append(f"| {step['code']} | {peaks.get('quality', '—')} | {peaks.get('scratch', '—')} | "
                         f"{peaks.get('hr', '—')} |")
    if report.get("session_loads"):
        lines += ["", ("Loading each graph in a fresh process (onnxruntime, arena off, full optimisation): the "
                       "resident growth right after the load, after freed heap went back to the OS (`malloc_trim`, as "
                       "the backend does), and the load time, which stage-by-stage sessions pay again for every photo "
                       "(warm page cache)."),
                  "", "| graph | file | resident after load | after trim | load time |", "|---|---|---|---|---|"]
        lines += [f"| {r['graph']} | {r['file_mib']} MiB | {r['resident_after_load_mib']} MiB | "
                  f"{r['resident_after_trim_mib']} MiB | {r['load_s']} s |" for r in report["session_loads"]]
    lines += ["", (f"Machine: {env['cpu_count']} cores, load average at start {env['loadavg_start']}, at end "
                   f"{env['loadavg_end']} (other work on the machine slows both sides alike; compare within this run)."),
              "", "Made by `python benchmarks/memory_vs_original.py` (see its docstring)."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(report["summary"])
    sides = ("original", "trt-restore")
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for offset, side in enumerate(sides):
        peaks = [report["summary"][m].get(side, {}).get("peak_rss_gib", 0) for m in modes]
        axis.bar([i + (offset - 0.5) * 0.38 for i in range(len(modes))], peaks, width=0.38, label=side)
    axis.set_xticks(range(len(modes)), modes)
    axis.set_ylabel("peak RSS (GiB)")
    axis.set_title(f"Peak RSS per mode, {report['threads']} threads, faces off")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/memory_vs_original"))
    parser.add_argument("--models", type=Path, help="exported models of the same weights (default: export into WORK)")
    parser.add_argument("--torchvision", help="folder that holds torchvision for the original (pip --target)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["quality", "scratch", "hr"], choices=list(PHOTOS))
    parser.add_argument("--sides", nargs="+", default=["original", "trt-restore"], choices=["original", "trt-restore"])
    parser.add_argument("--name", default="memory_vs_original", help="results file stem")
    args = parser.parse_args(argv)

    import onnxruntime
    import torch

    args.work.mkdir(parents=True, exist_ok=True)
    root, models = prepare(args.work, args.models)
    log = args.work / "children.log"
    report = {"threads": args.threads, "repeats": args.repeats, "rows": [],
              "photos": {m: len(list((root / "test_images" / PHOTOS[m]).iterdir())) for m in args.modes},
              "environment": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                              "python": platform.python_version(), "cpu_count": os.cpu_count(),
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}}
    probe = subprocess.run([sys.executable, __file__, "session-loads", str(models), str(args.threads)],
                           check=True, capture_output=True, text=True)
    report["session_loads"] = json.loads(probe.stdout.strip().splitlines()[-1])
    for repeat in range(args.repeats):
        for mode in args.modes:
            order = args.sides if repeat % 2 == 0 else args.sides[::-1]
            for side in order:
                out = args.work / "out" / f"{side}-{mode}"
                if side == "original":
                    row = run_original(root, mode, out, args.threads, args.torchvision, log)
                else:
                    row = run_ours(root, mode, out, models, args.threads, log)
                row = {"mode": mode, "side": side, "repeat": repeat, **row}
                print(json.dumps(row), flush=True)
                report["rows"].append(row)
                write(report, args.name)  # after every row: a long run stopped early still reports
    print(markdown(report))


def write(report: dict, name: str) -> None:
    report["environment"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["summary"] = summary(report["rows"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(report))
    plot(report, RESULTS / f"{name}.png")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "original":
        run_original_script(Path(sys.argv[2]), sys.argv[4], sys.argv[5:], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "session-loads":
        from trt_restore.modes import SPECS

        every = list(dict.fromkeys(g for spec in SPECS.values() for g in spec.graphs))
        print(json.dumps(session_loads(Path(sys.argv[2]), every, int(sys.argv[3]))))
    else:
        main()
