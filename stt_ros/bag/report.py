"""metrics.json, report.md and its pictures (matplotlib, headless) for a bag evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

STRIP_HEIGHT = 160  # pixels per sample in the overlay strip


def _fmt(v: Any, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def plot_tc(path: Path, cam_name: str, frames: list, t0: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    done = [f for f in frames if f.processed]
    t = np.array([(f.stamp_ns - t0) / 1e9 for f in done])
    tc = np.array([100 * f.tc for f in done])
    ax.plot(t, tc, ".-", lw=1, ms=3, label="TC of frame vs previous (mIoU, %)")
    drops = [(f.stamp_ns - t0) / 1e9 for f in frames if not f.processed and f.stamp_ns >= t0]
    if drops:
        ax.plot(drops, np.full(len(drops), 1.0), "|", color="tab:red", ms=10, label=f"dropped ({len(drops)})")
    for i, f in enumerate(f for f in done if f.reset):
        ax.axvline((f.stamp_ns - t0) / 1e9, color="tab:orange", ls="--", lw=1,
                   label="ring-buffer reset" if i == 0 else None)
    ax.set_ylim(0, 101)
    ax.set_xlabel("time in bag (s)")
    ax.set_ylabel("TC (%)")
    ax.set_title(f"{cam_name}: temporal consistency over time")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency(path: Path, cam_name: str, frames: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for attr, label in (("inference_ms", "model (inference)"), ("end_to_end_ms", "end to end")):
        v = np.array([getattr(f, attr) for f in frames if f.processed], np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(v, bins=min(40, max(5, v.size // 3)), alpha=0.6, label=f"{label}: median {np.median(v):.1f} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title(f"{cam_name}: latency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_samples(folder: Path, strip_path: Path, slug: str, samples: list[tuple[float, np.ndarray]]) -> list[Path]:
    """Each sample overlay as a PNG, and a strip of all of them with their times."""
    paths, tiles = [], []
    for t, img in samples:
        p = folder / f"{slug}_{t:08.3f}s.png"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(p)
        h, w = img.shape[:2]
        tile = cv2.resize(img, (max(1, round(w * STRIP_HEIGHT / h)), STRIP_HEIGHT), interpolation=cv2.INTER_AREA)
        tile = cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)
        cv2.putText(tile, f"t={t:.2f}s", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((STRIP_HEIGHT, 4, 3), 255, np.uint8))
    if tiles:
        cv2.imwrite(str(strip_path), np.hstack(tiles[:-1]))
    return paths


TC_TEXT = {
    "stt_ros": "TC (stt_ros protocol, as the node publishes it): the previous class map warped onto the frame by "
               "optical flow at the network input size (nearest; pixels leaving the image not compared), "
               "intersections and unions summed over all frame pairs, mean over classes present; per frame: the "
               "pair's mIoU.",
    "etc": "TC (ETC's protocol, eval_tc.py): mask t+1 warped onto frame t with forward flow at the camera size "
           "(bilinear class ids, clamped borders), intersections and unions summed over all pairs, mean over all "
           "classes; per frame: the node's TC (stt_ros protocol).",
}


def markdown(results: dict[str, Any], pictures: dict[str, dict[str, str]]) -> str:
    r = results
    lines = [f"# Bag evaluation: {r['bag']}", "",
             f"Mode: **{r['mode']}**{' (rate x' + str(r['rate']) + ')' if r['mode'] == 'through-node' else ''}; "
             f"model {r['model']['model']} at {r['model']['input_height']}x{r['model']['input_width']}, "
             f"T={r['model']['key_frames']}, weights `{r['model']['weights'] or 'random'}`; TC flow {r['flow']}, "
             f"protocol {r.get('tc_protocol', 'stt_ros')}; "
             f"{r['wall_s']:.1f} s wall.", ""]
    if r.get("error"):
        lines += [f"**The bag is damaged:** {r['error']}", ""]
    lines += ["| camera | frames | processed | dropped | rejected | resets | mIoU (%) | TC (%) | TC per frame, mean "
              "/ min (%) | model ms p50 / p90 | end-to-end ms p50 / p90 |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in r["cameras"]:
        inf, e2e = c["inference_ms"], c["end_to_end_ms"]
        lines.append(f"| {c['camera']} (`{c['topic']}`) | {c['frames']} | {c['processed']} | {c['dropped']} | "
                     f"{c['rejected']} | {c['resets']} | {_fmt(c['miou'])} | {_fmt(c['tc'])} | "
                     f"{_fmt(c['tc_frame_mean'])} / {_fmt(c['tc_frame_min'])} | {_fmt(inf['p50'])} / "
                     f"{_fmt(inf['p90'])} | {_fmt(e2e['p50'])} / {_fmt(e2e['p90'])} |")
    lines.append("")
    lines.append(TC_TEXT[r.get("tc_protocol", "stt_ros")] + " mIoU: frames whose label (same stamp) is in the bag. "
                 "End to end: " + ("from publishing the frame to receiving its mask." if r["mode"] == "through-node"
                                   else "decoding, model, colour mask and overlay (no transport offline)."))
    lines.append("")
    for c in r["cameras"]:
        pics = pictures.get(c["camera"], {})
        lines += [f"## {c['camera']}", ""]
        if pics.get("tc"):
            lines += [f"![TC over time]({pics['tc']})", ""]
        if pics.get("latency"):
            lines += [f"![latency]({pics['latency']})", ""]
        if pics.get("samples"):
            lines += [f"Sample overlays (each also in `{pics['overlays']}`):", "",
                      f"![overlays]({pics['samples']})", ""]
        iou, tc = c["per_class_iou"], c.get("per_class_tc") or {}
        names = [k for k in (iou or tc) if iou.get(k) is not None or tc.get(k) is not None]
        if names:  # TC per class: the mean TC is over every class predicted, a rare one counting like the road
            lines += ["| class | IoU (%) | TC (%) |", "|---|---|---|"]
            lines += [f"| {k} | {_pct(iou.get(k))} | {_pct(tc.get(k))} |" for k in names] + [""]
        if c["rejections"]:
            lines += ["Rejected frames: " + "; ".join(c["rejections"]), ""]
        if c["label_error_count"]:
            lines += [f"Unusable labels ({c['label_error_count']}): " + "; ".join(c["label_errors"]), ""]
    if r.get("node"):
        n = r["node"]
        lines += ["## stt_node", "", f"Exit code {n.get('returncode')}; log `{n.get('log')}`.", ""]
    if r.get("skipped_topics"):
        lines += ["## Topics not evaluated", ""] + [f"- {t}" for t in r["skipped_topics"]] + [""]
    lines += ["## Files", "", f"- output bag: `{r['output_bag']}` (open in Foxglove, or `ros2 bag play` it with RViz "
              f"and config/stt.rviz)", "- metrics: `metrics.json`", ""]
    return "\n".join(lines)


def write_report(out: Path, results: dict[str, Any], run) -> None:  # noqa: ANN001
    """metrics.json, report.md, plots/ and overlays/ under ``out``."""
    plots, overlays = out / "plots", out / "overlays"
    plots.mkdir(parents=True, exist_ok=True)
    overlays.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, dict[str, str]] = {}
    for cam in run.cams:
        met = run.metrics[cam.topic]
        if not met.frames:
            continue
        t0 = run.first_stamp.get(cam.topic, met.frames[0].stamp_ns)
        pics = {"tc": f"plots/tc_{cam.slug}.png", "latency": f"plots/latency_{cam.slug}.png", "overlays": "overlays/"}
        plot_tc(out / pics["tc"], cam.name, met.frames, t0)
        plot_latency(out / pics["latency"], cam.name, met.frames)
        if run.samples[cam.topic]:
            pics["samples"] = f"plots/samples_{cam.slug}.png"
            write_samples(overlays, out / pics["samples"], cam.slug, run.samples[cam.topic])
        pictures[cam.name] = pics
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(markdown(results, pictures))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"
