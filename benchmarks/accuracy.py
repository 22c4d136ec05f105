"""INT8 vs fp32 accuracy, per network and end to end (onnxruntime, same photos, same masks).

For every photo and mode the fp32 pipeline runs once with its graph inputs recorded. Then:
- per network, isolated: the network's INT8 model on exactly the fp32 inputs -> relative L2
  error of its outputs;
- per network, end to end: the pipeline with only that network in INT8 -> PSNR/SSIM of the
  restored photo and relative error of the latent / mapped latent;
- all networks INT8 -> the same.

    python -m trt_restore.benchmarks.accuracy --models M --photos DIR [--degraded CALDIR] [-o DIR]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from trt_restore.backends.base import Backend

MODES = ("quality", "scratch", "hr")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over channels (Gaussian window sigma 1.5, Wang et al. 2004 constants)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    value = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(value.mean())


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(b.astype(np.float64) - a) / max(np.linalg.norm(a.astype(np.float64)), 1e-12))


class QdqBackend(Backend):
    """Runs the Q/DQ model of every graph that has one, whatever the runtime's per-graph choice
    (so the table can show why a graph is kept fp32); `recommended` = the runtime's INT8 graphs."""

    def __init__(self, models, threads: int | None = None):
        from trt_restore.backends.onnxruntime_backend import OrtBackend

        self.backend = OrtBackend(models, threads=threads)
        entries = self.backend.store.manifest.get("int8", {}).get("graphs", {})
        self.paths = {g: self.backend.store.root / e["file"] for g, e in entries.items() if e.get("file")}
        self.recommended = {g for g, e in entries.items() if e.get("file") and e.get("precision", "int8") == "int8"}
        self.store = self.backend.store
        self.name = "qdq"

    def run(self, graph, inputs):
        if graph not in self.paths:
            return self.backend.run(graph, inputs)
        session = self.backend._session("qdq:" + graph, self.paths[graph])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, {k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()})))

    def describe(self):
        return "Q/DQ models of every graph"


class Hybrid(Backend):
    """Routes each graph to the INT8 or the fp32 backend; records inputs of the fp32 run."""

    def __init__(self, fp32, int8, int8_graphs: set[str], record: bool = False):
        self.fp32, self.int8, self.int8_graphs = fp32, int8, int8_graphs
        self.store = fp32.store
        self.name = "hybrid"
        self.feeds: dict[str, list] = {} if record else None

    def run(self, graph, inputs):
        if self.feeds is not None:
            self.feeds.setdefault(graph, []).append({k: np.array(v, dtype=np.float32) for k, v in inputs.items()})
        return (self.int8 if graph in self.int8_graphs else self.fp32).run(graph, inputs)

    def describe(self):
        return "hybrid"


def load_photos(folder: Path, max_side: int) -> list[tuple[str, np.ndarray]]:
    from trt_restore.io import read_image

    out = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        image = read_image(path)
        scale = min(1.0, max_side / max(image.shape[:2]))
        if scale < 1:
            image = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
        out.append((path.stem, image))
    return out


def evaluate_set(fp32, int8, items: list[tuple[str, np.ndarray, np.ndarray]], modes=MODES, log=print,
                 per_mode: dict[str, int] | None = None) -> dict:
    """items: (name, image, drawn mask). Returns per mode: per network + all-INT8 aggregates.
    per_mode: at most this many items in a mode (photos with 'scratch' in the name first)."""
    from trt_restore.global_restoration import GlobalRestorer
    from trt_restore.model_store import GRAPHS_FOR_MODE
    from trt_restore.preprocess import resize_to_multiple
    from trt_restore.scratch_detection import detect_scratches

    available = set(int8.paths)
    result: dict = {}
    for mode in modes:
        graphs = [g for g in GRAPHS_FOR_MODE[mode] if g != "detection" and g in available]
        rows: dict[str, dict[str, list]] = {}

        def add(key: str, metric: str, value: float) -> None:
            rows.setdefault(key, {}).setdefault(metric, []).append(value)

        chosen_items = items
        if per_mode and mode in per_mode:
            chosen_items = sorted(items, key=lambda it: "scratch" not in it[0])[:per_mode[mode]]
        for name, image, mask in chosen_items:
            user_mask = None if mode == "quality" else mask
            recorder = Hybrid(fp32, int8, set(), record=True)
            reference = GlobalRestorer(recorder, mode).restore(image, mask=user_mask)
            for graph in graphs:  # isolated: same inputs
                for feed in recorder.feeds.get(graph, []):
                    a, b = fp32.run(graph, feed), int8.run(graph, feed)
                    add(graph, "isolated_rel_error", max(rel(a[k], b[k]) for k in a))
            combos = [(g, {g}) for g in graphs] + [("all INT8", set(graphs))]
            default = set(graphs) & int8.recommended
            if default != set(graphs):
                combos.append(("runtime --precision int8 (" + ", ".join(sorted(set(graphs) - default)) + " fp32)", default))
            for key, chosen in combos:
                got = GlobalRestorer(Hybrid(fp32, int8, chosen), mode).restore(image, mask=user_mask)
                add(key, "psnr", psnr(reference.restored, got.restored))
                add(key, "ssim", ssim(reference.restored, got.restored))
                add(key, "latent_rel_error", rel(reference.tensors["latent"], got.tensors["latent"]))
                add(key, "mapped_rel_error", rel(reference.tensors["mapped"], got.tensors["mapped"]))
                add(key, "output_rel_error", rel(reference.tensors["output"], got.tensors["output"]))
            log(f"  {mode} {name} {image.shape[1]}x{image.shape[0]}: all INT8 "
                f"{rows['all INT8']['psnr'][-1]:.1f} dB, mapped rel. error {rows['all INT8']['mapped_rel_error'][-1]:.3f}")
        result[mode] = {"photos": [it[0] for it in chosen_items]} | {key: {metric: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                              for metric, v in metrics.items()} for key, metrics in rows.items()}
    if "detection" in available:  # the detector on its own: probabilities and masks
        rows = {}
        for name, image, _ in items:
            image16 = resize_to_multiple(image, 16, "bicubic")
            _, p32 = detect_scratches(fp32, image16)
            _, p8 = detect_scratches(int8, image16)
            split = float(np.median(p32))
            ours, theirs = p8 >= split, p32 >= split
            rows.setdefault("prob_rel_error", []).append(rel(p32, p8))
            rows.setdefault("mask_agreement_at_0.4", []).append(float(((p8 >= 0.4) == (p32 >= 0.4)).mean()))
            rows.setdefault("mask_iou_at_median", []).append(float((ours & theirs).sum() / max((ours | theirs).sum(), 1)))
        result["detection"] = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                               for k, v in rows.items()}
    return result


def markdown(report: dict) -> str:
    lines = ["# INT8 vs fp32 accuracy (onnxruntime)", "",
             f"Models: {report['models']}; INT8 tool: {report['int8']['tool']} "
             f"({report['int8']['weights']}; {report['int8']['activations']}; calibration "
             f"{report['int8']['calibration']['method']} {report['int8']['calibration'].get('percentile') or ''} on "
             f"{report['int8']['calibration']['items']} synthetic degraded photos). Weights: {report['weights_note']}", "",
             "PSNR/SSIM compare the restored 8-bit photo with the fp32 pipeline's; relative errors are L2 norms "
             "of the difference over the fp32 tensor. 'isolated' = the network alone on the fp32 pipeline's "
             "inputs; the other columns = the whole pipeline with only that network (or all) in INT8.", ""]
    for set_name, modes in report["sets"].items():
        lines += [f"## {set_name}", "", "| mode | INT8 network(s) | PSNR dB (min) | SSIM | latent rel. err | "
                  "mapped rel. err | isolated rel. err |", "|---|---|---|---|---|---|---|"]
        for mode, rows in modes.items():
            if mode == "detection":
                continue
            for key, m in rows.items():
                if key == "photos":
                    continue
                iso = m.get("isolated_rel_error", {}).get("mean")
                lines.append(f"| {mode} ({len(rows['photos'])}) | {key} | {m['psnr']['mean']:.1f} ({m['psnr']['min']:.1f}) | "
                             f"{m['ssim']['mean']:.3f} | {m['latent_rel_error']['mean']:.3f} | "
                             f"{m['mapped_rel_error']['mean']:.3f} | {'—' if iso is None else f'{iso:.3f}'} |")
        if "detection" in modes:
            d = modes["detection"]
            lines += ["", f"detection alone: probability rel. error {d['prob_rel_error']['mean']:.4f}, mask agreement "
                          f"at 0.4 {d['mask_agreement_at_0.4']['mean']:.4f}, IoU of masks split at the median "
                          f"probability {d['mask_iou_at_median']['mean']:.3f}"]
        lines.append("")
    lines += ["## Kept in fp32", ""]
    for graph, entry in report["int8"]["graphs"].items():
        nodes = ", ".join(f"`{n}`" for n in entry["kept_fp32"]["nodes"]) or "none"
        lines.append(f"- {graph}: {entry['conv_int8']}/{entry['conv_total']} convs INT8 "
                     f"({100 * entry['int8_mac_fraction']:.0f}% of the conv MACs); fp32 convs: {nodes}; fp32 op "
                     f"types: {', '.join(entry['kept_fp32']['op_types'])}")
    lines += ["", f"Evaluation time: {report['elapsed_s']} s.", ""]
    return "\n".join(lines)


def run(models: Path, photos: Path | None, degraded: Path | None, output: Path, max_side: int = 512,
        degraded_count: int | None = None, modes=MODES, name: str = "accuracy", log=print,
        per_mode: dict[str, int] | None = None) -> dict:
    from trt_restore.backends.onnxruntime_backend import OrtBackend
    from trt_restore.benchmarks.worker import bench_mask

    started = time.perf_counter()
    fp32, int8 = OrtBackend(models, precision="fp32"), QdqBackend(models)
    report = {"models": str(models), "int8": {k: v for k, v in fp32.store.manifest["int8"].items()},
              "weights_note": "synthetic (deterministic rule of the reference vectors), not the official release",
              "max_side": max_side, "sets": {}}
    sets = []
    if photos is not None:
        items = [(n, im, bench_mask(*im.shape[:2], seed=i + 1)) for i, (n, im) in enumerate(load_photos(photos, max_side))]
        sets.append((f"real old photos ({len(items)}, {photos.name}/, longest side ≤ {max_side} px, drawn masks)", items))
    if degraded is not None:
        from trt_restore.calibration.dataset import CalibrationSet

        calibration = CalibrationSet.open(degraded)
        count = min(degraded_count or len(calibration.items), len(calibration.items))
        items = [(f"{i:04d}", *calibration.load(i)) for i in range(count)]
        sets.append((f"synthetic degraded set ({count}, seed {calibration.manifest['seed']}, "
                     f"{calibration.manifest['size']} px, own masks; not the calibration seed)", items))
    for label, items in sets:
        log(label)
        report["sets"][label] = evaluate_set(fp32, int8, items, modes, log, per_mode)
        report["per_mode_limit"] = per_mode
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(report, indent=1))
    (output / f"{name}.md").write_text(markdown(report))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--degraded", type=Path)
    parser.add_argument("--degraded-count", type=int)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="accuracy")
    parser.add_argument("--per-mode", default="", help="e.g. scratch=4,hr=4: at most N photos in those modes "
                        "(photos with 'scratch' in the name first)")
    args = parser.parse_args()
    per_mode = {k: int(v) for k, v in (p.split("=") for p in args.per_mode.split(",") if p)}
    run(args.models, args.photos, args.degraded, args.output, args.max_side, args.degraded_count,
        tuple(args.modes.split(",")), args.name, per_mode=per_mode or None)


if __name__ == "__main__":
    main()
