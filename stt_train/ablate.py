"""stt-ablate: sweep the paper's ablation axes on a trained STT model and print the seed's tables.

Axes (the slides' ablation study):

* key selection: start size s, end size e, expansion eps (``SS ES EC | key size | mIoU TC fps``),
  rows (1,5,1) (2,5,1) (3,5,1) (1,3,1) (1,7,1) (1,5,2) (1,5,3) and the dense row "-" (every query
  attends to every position of every key frame, no query selection);
* query selection: neighbourhood r and ratio TR (``NR TR | mIoU TC fps``), rows r = 3, 5, 7, 9 at
  TR = 50 % and TR = 0, 25, 75, 100 % at r = 5 (the slides' r = 1 row has no neighbours, so the NSM
  score is undefined there: it is skipped and said so);
* number of key frames T (``T | key size | mIoU TC fps``).

None of these settings changes the model's parameters (projections are shared by every window
and ratio), so the sweep evaluates **one trained model at inference** under each setting: this
is an inference-time ablation, not the paper's retraining per row, which a CPU cannot afford.
The key size is counted per query for T key frames as in the slides (527 for (1, 5, 1) at T=7).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from stt_ros.config import ConfigError, STTConfig
from stt_train.cli import command_parser
from stt_train.datasets import DatasetError

KEY_ROWS = [(1, 5, 1), (2, 5, 1), (3, 5, 1), (1, 3, 1), (1, 7, 1), (1, 5, 2), (1, 5, 3)]
QUERY_ROWS = [(3, 0.5), (5, 0.5), (7, 0.5), (9, 0.5), (5, 0.0), (5, 0.25), (5, 0.75), (5, 1.0)]
FRAME_ROWS = [1, 2, 3, 5, 7]


def _dense_model(model):
    """A copy of ``model`` whose temporal module runs dense attention (no selection)."""
    import copy
    import types

    from stt_ros.model.stt import dense_temporal_attention

    dense = copy.deepcopy(model)
    stt = dense.stt
    stt.forward = types.MethodType(lambda self, feat, memory, order: dense_temporal_attention(self, feat, memory,
                                                                                             order), stt)
    return dense


def _row(res: dict[str, Any]) -> tuple[str, str, str]:
    tc = res["tc"]
    return f"{res['miou']:.1f}", "-" if np.isnan(tc) else f"{tc:.1f}", f"{res['fps']:.1f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "\t".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([fmt(header)] + [fmt(r) for r in rows])


def run_ablation(base: STTConfig, dataset: str, root: str, split: str, axes: list[str], flow: str,
                 max_sequences: int | None, frames: int | None, dense: bool, progress: bool) -> dict[str, Any]:
    """Evaluate every row of ``axes`` (key, query, frames); returns {axis: [(setting, result), ...]}."""
    from stt_ros.model.zoo import build_model
    from stt_ros.viz import class_names
    from stt_ros.weights import load_weights
    from stt_train.evaluate import eval_dataset, evaluate_sequences

    if not base.temporal:
        raise ConfigError(f"{base.model} is a per-frame baseline: ablations need an stt_* model")
    names = class_names(base.num_classes, dataset)
    out: dict[str, Any] = {}

    def evaluate(cfg: STTConfig, desc: str, dense_attention: bool = False) -> dict[str, Any]:
        ds, seqs = eval_dataset(dataset, root, split, cfg, 1, frames)
        seqs = seqs[:max_sequences] if max_sequences else seqs
        model = build_model(cfg)
        load_weights(model, cfg.weights, config=cfg.to_dict())
        if dense_attention:
            model = _dense_model(model)
        return evaluate_sequences(cfg, seqs, ds, flow, model=model, progress=progress, desc=desc, names=names)

    t7 = base.replace(key_frames=7)
    if "key" in axes:
        rows = []
        for s, e, eps in KEY_ROWS:
            cfg = t7.replace(key_window_start=s, key_window_end=e, key_window_step=eps)
            rows.append(((s, e, eps), evaluate(cfg, f"key s={s} e={e} eps={eps}")))
        if dense:
            rows.append((None, evaluate(t7, "key dense", dense_attention=True)))
        out["key"] = rows
    if "query" in axes:
        out["query"] = [((r, tr), evaluate(base.replace(query_radius=r, query_ratio=tr), f"query r={r} TR={tr:.0%}"))
                        for r, tr in QUERY_ROWS]
    if "frames" in axes:
        out["frames"] = [(t, evaluate(base.replace(key_frames=t), f"T={t}")) for t in FRAME_ROWS]
    return out


def format_tables(results: dict[str, Any], base: STTConfig) -> str:
    from stt_ros.model.stt import key_half_widths, key_size

    parts = []
    h8, w8 = base.input_height // 8, base.input_width // 8
    if "key" in results:
        rows = []
        for i, (setting, res) in enumerate(results["key"], 1):
            if setting is None:
                rows.append([str(i), "-", "-", "-", str(7 * h8 * w8), *_row(res)])
            else:
                s, e, eps = setting
                ks = key_size(key_half_widths(7, s, e, eps))
                rows.append([str(i), str(s), str(e), str(eps), str(ks), *_row(res)])
        parts.append("Key selection (T = 7)\n" + table(["", "SS (s)", "ES (e)", "EC (eps)", "key size", "mIoU (%)",
                                                         "TC (%)", "fps (frame/s)"], rows))
    if "query" in results:
        rows = [[str(i), str(r), f"{tr:.0%}", *_row(res)] for i, ((r, tr), res) in enumerate(results["query"], 1)]
        parts.append("Query selection\n" + table(["", "NR (r)", "TR", "mIoU (%)", "TC (%)", "fps (frame/s)"], rows)
                     + "\n(r = 1 of the slides is skipped: a 1x1 neighbourhood has no neighbours, the NSM score is "
                       "undefined)")
    if "frames" in results:
        rows = []
        for i, (t, res) in enumerate(results["frames"], 1):
            ks = key_size(key_half_widths(t, base.key_window_start, base.key_window_end, base.key_window_step))
            rows.append([str(i), str(t), str(ks), *_row(res)])
        parts.append("Numbers of key frames\n" + table(["", "T", "key size", "mIoU (%)", "TC (%)", "fps (frame/s)"],
                                                       rows))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(
        "stt-ablate", "Sweep the paper's ablation axes (s, e, eps; r, TR; T) on a trained STT model at inference "
        "and print the tables in the slides' format.",
        ["stt-ablate --weights models/stt_bise18_synthdrive.safetensors --dataset synthdrive --root data/synthdrive "
         "--split val",
         "stt-ablate --weights w.safetensors --dataset synthdrive --root data/synthdrive --axes query "
         "--max-sequences 2 --dense"],
        "The model is trained once; each row changes only inference settings (see the module docstring).")
    parser.add_argument("--weights", required=True, help="trained stt_* checkpoint (.safetensors with its config)")
    parser.add_argument("--dataset", required=True, choices=("cityscapes", "camvid", "synthdrive"))
    parser.add_argument("--root", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--axes", default="key,query,frames", help="comma-separated subset of key, query, frames")
    parser.add_argument("--flow", help="TC flow: dis (default), gt (SynthDrive's default), raft:<ckpt>")
    parser.add_argument("--max-sequences", type=int, help="evaluate only the first N sequences per row")
    parser.add_argument("--frames", type=int, help="frames per evaluation clip / first N frames of each sequence")
    parser.add_argument("--dense", action="store_true", help="add the dense-attention row (slow: no selection)")
    parser.add_argument("--json", help="write all results as JSON here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    axes = [a.strip() for a in args.axes.split(",") if a.strip()]
    try:
        bad = sorted(set(axes) - {"key", "query", "frames"})
        if bad:
            raise ConfigError(f"--axes: unknown axis {bad}; choose from key, query, frames")
        from stt_train.evaluate import model_config_from_weights

        base = model_config_from_weights(args.weights, {}).replace(weights=args.weights, backend="torch",
                                                                   device="cpu")
        flow = args.flow or ("gt" if args.dataset == "synthdrive" else "dis")
        results = run_ablation(base, args.dataset, args.root, args.split, axes, flow, args.max_sequences,
                               args.frames, args.dense, not args.no_progress)
    except (ConfigError, DatasetError, ValueError, OSError) as exc:
        print(f"stt-ablate: error: {exc}", file=sys.stderr)
        return 2
    text = format_tables(results, base)
    print(text, end="")
    if args.json:
        import json
        from pathlib import Path

        from stt_ros.weights import atomic_write

        data = {axis: [{"setting": s, **r} for s, r in rows] for axis, rows in results.items()}
        blob = json.dumps(data, indent=2, default=str)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(blob))
    return 0


if __name__ == "__main__":
    sys.exit(main())
