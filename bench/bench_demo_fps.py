"""fps of the SynthDrive demo model (STT-BiSe18) and its per-frame baseline, measured side by side.

Both run through the streaming runtime (StreamingSegmenter, torch backend, CPU) on the same
frames, interleaved frame by frame so a busy shared CPU slows both alike; prints fps and the
ratio. Not a test.

    python bench/bench_demo_fps.py --stt models/stt_bise18_synthdrive.safetensors \\
        --baseline runs/synthdrive_bise18_ft/final.safetensors --root data/synthdrive_heldout
"""

from __future__ import annotations

import argparse
import statistics
import time

from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_train.datasets import read_rgb
from stt_train.evaluate import eval_dataset, model_config_from_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stt", required=True)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--root", required=True, help="a SynthDrive dataset (its val split is used)")
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    segs = {}
    for name, w in (("stt", args.stt), ("baseline", args.baseline)):
        cfg = model_config_from_weights(w, {}).replace(weights=w, backend="torch", device="cpu")
        segs[name] = (cfg, StreamingSegmenter(create_backend(cfg)))
    _, seqs = eval_dataset("synthdrive", args.root, "val", segs["stt"][0])
    frames = [read_rgb(p) for s in seqs for p in s.frames][: args.frames]
    times = {k: [] for k in segs}
    for img in frames:
        for k, (_, seg) in segs.items():
            t0 = time.perf_counter()
            seg.process(img)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[3:]) for k, v in times.items()}
    for k, (cfg, _) in segs.items():
        print(f"{k:9s} {cfg.model:11s} {cfg.input_height}x{cfg.input_width}: {1 / med[k]:6.1f} fps "
              f"(median {1e3 * med[k]:.1f} ms)")
    print(f"stt / baseline time ratio: {med['stt'] / med['baseline']:.2f}")


if __name__ == "__main__":
    main()
