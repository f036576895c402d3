#!/usr/bin/env python3
"""The sparse STT module vs dense temporal attention on the same buffered frames, side by side.

Sparse: ``SparseTemporalTransformer`` with its defaults (TR=0.5 of the positions are queries, each
attends to a (2 l_k + 1)^2 window in each of the T frames, 527 keys with the default schedule).
``--method`` picks the sparse computation: ``tiles`` (dense products per query tile, the default of
the module), ``gather`` (one gathered window per selected query, the previous formulation) or
``both`` (default: both measured in the same interleaved rounds). For each it prints the time, the
FLOPs of the two attention products (useful: selected queries x their keys x attn_dim x 2
mul-adds x 2 products; executed: what the computation really multiplies, tiles included padding
and positions that are not selected) and the GFLOP/s reached over the whole module call.
Dense: ``dense_temporal_attention``, the reference where every position is a query and attends
to every position of every buffered frame. Same module, same weights, same feature map and memory
(keys/values projected once from random features, as the ring buffer holds them). Only the
attention step is timed (memory projection is the same for both and done beforehand).

The paper's ablation (Li et al., ACM MM 2021) reports 11.5 vs 0.2 fps for the module inside
PSP18 at 512x1024 input (a 64x128 map) with T=7; the target here is sparse >= 60x faster
and >= 50 useful GFLOP/s for the module.

This is a benchmark, not a test: it never fails on a missed target, it reports it.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from stt_ros.model.stt import (
    SparseTemporalTransformer,
    dense_temporal_attention,
    key_size,
    query_tiles,
    tile_flops,
)

TARGET_SPEEDUP = 60.0
TARGET_GFLOPS = 50.0
CHANNELS = 256


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 64x128, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  .venv/bin/python bench/bench_sparse_vs_dense.py --json /tmp/sparse_vs_dense.json\n"
               "  .venv/bin/python bench/bench_sparse_vs_dense.py --size 32x64 --dense-reps 5 --sparse-reps 20")
    p.add_argument("--size", type=parse_size, default=(64, 128), metavar="HxW",
                   help="feature map size (1/8 of the input; default: 64x128 = 512x1024 input)")
    p.add_argument("--frames", type=int, default=7, help="T, buffered frames (default: %(default)s)")
    p.add_argument("--dense-reps", type=int, default=3, help="measured dense runs (default: %(default)s)")
    p.add_argument("--sparse-reps", type=int, default=10, help="measured sparse runs (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default (default: %(default)s)")
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                   help="wall time, or this process's CPU time (all its threads: with --threads 1 the work done, "
                        "robust on a machine other jobs share) (default: %(default)s)")
    p.add_argument("--method", choices=("both", "tiles", "gather"), default="both",
                   help="sparse computation(s) to measure (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and features (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    if args.dense_reps < 1 or args.sparse_reps < 1 or args.frames < 1:
        p.error("--dense-reps, --sparse-reps and --frames must be >= 1")
    return args


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def timed(fn) -> float:
    t0 = clock()
    fn()
    return (clock() - t0) * 1e3


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    h, w = args.size
    T = args.frames
    stt = SparseTemporalTransformer(CHANNELS, key_frames=T).eval()
    methods = ["tiles", "gather"] if args.method == "both" else [args.method]
    hw = h * w
    sparse_keys, dense_keys = key_size(stt.half_widths), T * hw
    sparse_queries = sum(k for _, _, k in query_tiles(h, w, stt.query_ratio, stt.query_tiles))
    dense_queries = hw

    print("bench_sparse_vs_dense: sparse STT module vs dense temporal attention (same buffered frames)")
    print(f"  feature map {h}x{w}x{CHANNELS} (input {8 * h}x{8 * w}), batch 1, fp32, device cpu, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, clock {args.clock}")
    print(f"  T={T} half-widths={list(stt.half_widths)} r={stt.query_radius} TR={stt.query_ratio} "
          f"attn_dim={stt.heads * stt.head_dim} heads={stt.heads} tile={stt.tile}")
    print(f"  warm-up 1 run each, then {args.sparse_reps} sparse runs per method ({', '.join(methods)}) and "
          f"{args.dense_reps} dense runs, interleaved")

    with torch.inference_mode():
        feat = torch.randn(1, CHANNELS, h, w)
        memory = stt.project_memory(torch.randn(T, CHANNELS, h, w)).unsqueeze(0)  # (1, T, heads, HW, 2hd)
        order = list(range(T))

        def sparse(method: str):
            def run() -> torch.Tensor:
                stt.method = method
                return stt(feat, memory, order)
            return run

        def dense() -> torch.Tensor:
            return dense_temporal_attention(stt, feat, memory, order)

        runs = {m: sparse(m) for m in methods}
        for fn in runs.values():
            fn()
        dense()
        ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        t_sparse: dict[str, list[float]] = {m: [] for m in methods}
        t_dense: list[float] = []
        per_round = math.ceil(args.sparse_reps / args.dense_reps)
        for r in range(args.dense_reps):
            for i in range(min(per_round, args.sparse_reps - len(t_sparse[methods[0]]))):
                for m in (methods if i % 2 == 0 else methods[::-1]):  # alternate which goes first
                    t_sparse[m].append(timed(runs[m]))
            t_dense.append(timed(dense))
            print(f"    round {r + 1}/{args.dense_reps}: dense {t_dense[-1]:.0f} ms, " + ", ".join(
                f"{m} {statistics.median(t_sparse[m][-per_round:]):.1f} ms" for m in methods)
                + " (median of this round)", flush=True)
        while len(t_sparse[methods[0]]) < args.sparse_reps:
            for m in methods:
                t_sparse[m].append(timed(runs[m]))
        ru1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()

    m_dense = statistics.median(t_dense)
    med = {m: statistics.median(t_sparse[m]) for m in methods}
    useful = 4 * sparse_queries * sparse_keys * stt.attn_dim  # scores + values, 2 FLOPs per mul-add
    executed = {"gather": useful, "tiles": tile_flops(h, w, stt.half_widths, stt.tile, stt.attn_dim)}
    dense_flops = 4 * dense_queries * dense_keys * stt.attn_dim
    print()
    print(f"  {'module':<14} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'fps':>8} {'queries':>8} "
          f"{'keys/query':>10} {'query-key pairs':>16} {'GFLOP use/exec':>15} {'GFLOP/s use/exec':>17}")
    rows = [(f"sparse {m}", t_sparse[m], sparse_queries, sparse_keys, useful, executed[m]) for m in methods]
    rows.append(("dense", t_dense, dense_queries, dense_keys, dense_flops, dense_flops))
    for name, xs, nq, nk, fu, fe in rows:
        m = statistics.median(xs)
        print(f"  {name:<14} {m:10.1f} {min(xs):9.1f} {max(xs):9.1f} {1e3 / m:8.2f} {nq:8d} {nk:10d} {nq * nk:16,d} "
              f"{fu / 1e9:7.3f}/{fe / 1e9:<7.3f} {fu / m / 1e6:8.1f}/{fe / m / 1e6:<8.1f}")
    pair_ratio = (dense_queries * dense_keys) / (sparse_queries * sparse_keys)
    print()
    for m in methods:
        print(f"  speed-up dense/sparse {m}: {m_dense / med[m]:.1f}x (query-key pairs ratio {pair_ratio:.0f}x; "
              f"paper 11.5 vs 0.2 fps for the module within PSP18; target >= {TARGET_SPEEDUP:.0f}x); module "
              f"{useful / med[m] / 1e6:.1f} useful GFLOP/s (target >= {TARGET_GFLOPS:.0f})")
    if len(methods) == 2:
        print(f"  gather/tiles time ratio {med['gather'] / med['tiles']:.2f}x (same run, interleaved)")
    chunk = (stt.heads, min(1024, hw), dense_keys)  # dense_temporal_attention's attention chunk
    print(f"  process CPU time while measuring: user {ru1.ru_utime - ru0.ru_utime:.1f} s, "
          f"sys {ru1.ru_stime - ru0.ru_stime:.1f} s, wall {w1 - w0:.1f} s, minor page faults "
          f"{ru1.ru_minflt - ru0.ru_minflt:,d} (sys time: dense allocates fresh {'x'.join(map(str, chunk))} "
          f"fp32 attention chunks, {math.prod(chunk) * 4 / 2 ** 20:.0f} MiB each)")
    speedup = m_dense / med[methods[0]]
    met = speedup >= TARGET_SPEEDUP
    print(f"RESULT sparse({methods[0]})/dense speedup={speedup:.1f}x at {h}x{w} T={T} (target >= "
          f"{TARGET_SPEEDUP:.0f}x) {'met' if met else 'NOT met'}; "
          f"{useful / med[methods[0]] / 1e6:.1f} useful GFLOP/s (target >= {TARGET_GFLOPS:.0f})")

    if args.json:
        out = {
            "benchmark": "bench_sparse_vs_dense", "feature_map": [h, w, CHANNELS], "input": [8 * h, 8 * w],
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "settings": {"T": T, "half_widths": list(stt.half_widths), "r": stt.query_radius,
                         "TR": stt.query_ratio, "attn_dim": stt.heads * stt.head_dim, "heads": stt.heads},
            "tile": stt.tile, "median_ms": {**{f"sparse_{m}": med[m] for m in methods}, "dense": m_dense},
            "speedup": {m: m_dense / med[m] for m in methods},
            "gflop": {"useful": useful / 1e9, **{f"executed_{m}": executed[m] / 1e9 for m in methods},
                      "dense": dense_flops / 1e9},
            "gflops_per_s_useful": {m: useful / med[m] / 1e6 for m in methods},
            "target_speedup": TARGET_SPEEDUP, "target_met": met,
            "queries": {"sparse": sparse_queries, "dense": dense_queries},
            "keys_per_query": {"sparse": sparse_keys, "dense": dense_keys},
            "samples_ms": {**{f"sparse_{m}": t_sparse[m] for m in methods}, "dense": t_dense},
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
