"""stt-compare: is the difference between two models' mIoU and TC more than noise?

Takes two ``stt-eval --json`` results of the same sequences (say a per-frame baseline and an STT
model) and reports each metric, the difference and a paired bootstrap interval over sequences:
every resample draws the evaluated sequences with replacement (the same draw for both models),
sums the drawn sequences' confusion matrices and TC intersections/unions, and recomputes mIoU and
TC exactly as ``stt-eval`` does. Sequences, not frames, are resampled because consecutive frames of
one drive are far from independent; the spread this gives is what another set of sequences from
the same source would show (not what another training seed would).

Why a few lines of numpy instead of ``scipy.stats.bootstrap``: the statistic is a ratio of sums over
sequences, computed for both models from the same draw; numpy's ``bincount`` does the draw and the
metric code is ``stt_ros.metrics``'s own, and scipy (tens of MB) would be a dependency for this alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.metrics import consistency, consistency_per_class, iou_per_class, mean_iou


class CompareError(ValueError):
    """Two result files that cannot be compared (named in the message)."""


def _load(path: str | Path) -> dict[str, Any]:
    try:
        res = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"cannot read {path}: {exc}") from exc
    _check(res, str(path))
    return res


def _check(res: Any, label: str) -> None:
    if not isinstance(res, dict) or not res.get("per_sequence") or "per_class_iou" not in res:
        raise CompareError(f"{label} has no per-sequence results; write it again with stt-eval --json (versions "
                           f"before 2026-11-25 did not store them)")


def _stack(res: dict[str, Any], order: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    by_name = {s["name"]: s for s in res["per_sequence"]}
    conf = np.array([by_name[n]["confusion"] for n in order], np.int64)  # (S, C, C)
    inter = np.array([by_name[n]["tc_intersection"] for n in order], np.int64)  # (S, C)
    union = np.array([by_name[n]["tc_union"] for n in order], np.int64)
    return conf, inter, union


def paired_sequences(base: dict[str, Any], other: dict[str, Any], base_name: str = "base",
                     other_name: str = "other") -> list[str]:
    """Names of the sequences both results hold, in the base's order; an error if the sets differ."""
    _check(base, base_name)
    _check(other, other_name)
    for key in ("dataset", "split"):
        if key in base and key in other and base[key] != other[key]:
            raise CompareError(f"{base_name} is {key} {base[key]!r} but {other_name} is {key} {other[key]!r}; "
                               f"evaluate both models on the same split")
    a = [s["name"] for s in base["per_sequence"]]
    b = {s["name"] for s in other["per_sequence"]}
    if len(set(a)) != len(a) or len(b) != len(other["per_sequence"]):
        raise CompareError("a result lists the same sequence twice; evaluate each sequence once")
    if set(a) != b:
        only_a, only_b = sorted(set(a) - b), sorted(b - set(a))
        raise CompareError(f"the two results cover different sequences (only in {base_name}: {only_a[:5]}, only in "
                           f"{other_name}: {only_b[:5]}); evaluate both models on the same split")
    frames_b = {s["name"]: s["frames"] for s in other["per_sequence"]}
    differ = [s["name"] for s in base["per_sequence"] if s["frames"] != frames_b[s["name"]]]
    if differ:
        raise CompareError(f"sequences {differ[:5]} have different frame counts in {base_name} and {other_name}")
    n_a, n_b = len(base["per_class_iou"]), len(other["per_class_iou"])
    if n_a != n_b:
        raise CompareError(f"{base_name} has {n_a} classes but {other_name} has {n_b}")
    return a


def _metrics(conf: np.ndarray, inter: np.ndarray, union: np.ndarray) -> tuple[float, float]:
    return 100 * mean_iou(conf), 100 * consistency(inter, union)


def compare(base: dict[str, Any], other: dict[str, Any], resamples: int = 2000, seed: int = 0,
            level: float = 0.95) -> dict[str, Any]:
    """Point estimates, differences (other - base) and paired bootstrap intervals, in percent."""
    if resamples < 1:
        raise CompareError(f"resamples={resamples} must be at least 1")
    if not 0 < level < 1:
        raise CompareError(f"level={level} must lie in (0, 1)")
    names = paired_sequences(base, other)
    a, b = _stack(base, names), _stack(other, names)
    n = len(names)
    point_a, point_b = _metrics(*(x.sum(0) for x in a)), _metrics(*(x.sum(0) for x in b))
    rng = np.random.default_rng(seed)
    diffs = np.empty((resamples, 2))
    for i in range(resamples):
        w = np.bincount(rng.integers(0, n, n), minlength=n)  # how often each sequence was drawn
        ma = _metrics(*(np.tensordot(w, x, 1) for x in a))
        mb = _metrics(*(np.tensordot(w, x, 1) for x in b))
        diffs[i] = (mb[0] - ma[0], mb[1] - ma[1])
    lo, hi = np.nanquantile(diffs, [(1 - level) / 2, (1 + level) / 2], axis=0)
    classes = list(base["per_class_iou"])
    per_class = {}
    for j, (iou_a, iou_b, tc_a, tc_b) in enumerate(zip(iou_per_class(a[0].sum(0)), iou_per_class(b[0].sum(0)),
                                                       _per_class_tc(a), _per_class_tc(b), strict=True)):
        if np.isnan([iou_a, iou_b, tc_a, tc_b]).all():
            continue
        per_class[classes[j]] = {"iou": [_pct(iou_a), _pct(iou_b)], "tc": [_pct(tc_a), _pct(tc_b)]}
    out: dict[str, Any] = {"sequences": n, "resamples": resamples, "level": level, "seed": seed, "per_class": per_class}
    for k, key in enumerate(("miou", "tc")):
        out[key] = {"base": point_a[k], "other": point_b[k], "difference": point_b[k] - point_a[k],
                    "interval": [float(lo[k]), float(hi[k])],
                    "p_not_better": float(np.mean(diffs[:, k] <= 0))}
    return out


def _per_class_tc(x: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    return consistency_per_class(x[1].sum(0), x[2].sum(0))


def _pct(v: float) -> float | None:
    return None if np.isnan(v) else 100 * float(v)


def markdown(cmp: dict[str, Any], base_label: str = "base", other_label: str = "other") -> str:
    pct = round(100 * cmp["level"])
    lines = [f"{cmp['sequences']} sequences, paired bootstrap over sequences ({cmp['resamples']} resamples)", "",
             f"| metric | {base_label} | {other_label} | difference | {pct}% interval | share of resamples <= 0 |",
             "|---|---|---|---|---|---|"]
    for key, label in (("miou", "mIoU (%)"), ("tc", "TC (%)")):
        m = cmp[key]
        lo, hi = m["interval"]
        lines.append(f"| {label} | {m['base']:.2f} | {m['other']:.2f} | {m['difference']:+.2f} | "
                     f"[{lo:+.2f}, {hi:+.2f}] | {m['p_not_better']:.3f} |")
    lines += ["", f"| class | IoU {base_label} | IoU {other_label} | TC {base_label} | TC {other_label} "
                  f"| TC difference |", "|---|---|---|---|---|---|"]
    for name, c in cmp["per_class"].items():
        (ia, ib), (ta, tb) = c["iou"], c["tc"]
        diff = "-" if ta is None or tb is None else f"{tb - ta:+.1f}"
        lines.append(f"| {name} | {_f(ia)} | {_f(ib)} | {_f(ta)} | {_f(tb)} | {diff} |")
    return "\n".join(lines) + "\n"


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stt-compare", description="Compare two stt-eval results of the same sequences: mIoU and TC "
        "differences with a paired bootstrap interval over sequences, and per-class IoU/TC.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n"
               "  stt-eval --weights base.safetensors --dataset synthdrive --root data/sd --json base.json\n"
               "  stt-eval --weights stt.safetensors --dataset synthdrive --root data/sd --json stt.json\n"
               "  stt-compare base.json stt.json --labels BiSe18 STT-BiSe18")
    parser.add_argument("base", help="stt-eval --json result of the reference model")
    parser.add_argument("other", help="stt-eval --json result of the model compared with it")
    parser.add_argument("--labels", nargs=2, default=("base", "other"), metavar=("BASE", "OTHER"))
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the comparison as JSON here")
    args = parser.parse_args(argv)
    try:
        cmp = compare(_load(args.base), _load(args.other), args.resamples, args.seed, args.level)
        if args.json:
            from stt_ros.weights import atomic_write

            text = json.dumps(cmp, indent=2)
            atomic_write(args.json, lambda tmp: Path(tmp).write_text(text))
    except (CompareError, OSError) as exc:
        print(f"stt-compare: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(cmp, *args.labels), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
