"""stt-compare: is the difference between two models' mIoU and TC more than noise?

Takes two ``stt-eval --json`` results of the same sequences (say a per-frame baseline and an STT
model) and reports each metric, the difference and a paired bootstrap interval over sequences:
every resample draws the evaluated sequences with replacement (the same draw for both models),
sums the drawn sequences' confusion matrices and TC intersections/unions, and recomputes mIoU and
TC exactly as ``stt-eval`` does (TC with the formula of the results' ``tc_protocol``: ``stt_ros``
averages over the classes that occur, ``etc`` over all classes; results of different protocols are
not compared). Sequences, not frames, are resampled because consecutive frames of
one drive are far from independent; the spread this gives is what another set of sequences from
the same source would show (not what another training seed would).

Another seed of the same recipe moves TC by as much as the differences being measured (three
BiSe18 seeds span 3 TC points on SynthDrive), so each side can also be several training runs
(``--base b0.json b1.json ... --other s0.json s1.json ...``): a side's metric is then the mean of
its runs' metrics, and each resample also draws every side's runs with replacement.

Why a few lines of numpy instead of ``scipy.stats.bootstrap``: the statistic is a ratio of sums over
sequences, computed for both models from the same draw; numpy's ``bincount`` does the draw and the
metric code is ``stt_ros.metrics``'s own, and scipy (tens of MB) would be a dependency for this alone.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.metrics import (
    consistency,
    consistency_per_class,
    etc_consistency,
    etc_consistency_per_class,
    iou_per_class,
    mean_iou,
)
from stt_train.cli import command_parser

#: TC and per-class TC from summed intersections/unions, by ``stt-eval --tc-protocol``
TC_FORMULAS = {"stt_ros": (consistency, consistency_per_class), "etc": (etc_consistency, etc_consistency_per_class)}


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


def tc_protocol(res: dict[str, Any]) -> str:
    """The TC protocol of an ``stt-eval`` result (results written before the option existed: stt_ros)."""
    protocol = res.get("tc_protocol", "stt_ros")
    if protocol not in TC_FORMULAS:
        raise CompareError(f"unknown tc_protocol {protocol!r}; this stt-compare knows {', '.join(TC_FORMULAS)}")
    return protocol


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
    if tc_protocol(base) != tc_protocol(other):
        raise CompareError(f"{base_name} measures TC in the {tc_protocol(base)} protocol but {other_name} in "
                           f"{tc_protocol(other)}; evaluate both with the same stt-eval --tc-protocol")
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


def _metrics(conf: np.ndarray, inter: np.ndarray, union: np.ndarray, protocol: str) -> tuple[float, float]:
    return 100 * mean_iou(conf), 100 * TC_FORMULAS[protocol][0](inter, union)


def compare(base: dict[str, Any] | Sequence[dict[str, Any]], other: dict[str, Any] | Sequence[dict[str, Any]],
            resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Point estimates, differences (other - base) and bootstrap intervals, in percent.

    ``base`` and ``other`` are one ``stt-eval`` result each, or several (training runs of one recipe
    with different seeds). A side's metric is the mean over its runs of each run's mIoU / TC. Every
    resample draws the sequences with replacement (one draw shared by every run of both sides) and,
    where a side has several runs, draws its runs with replacement too, so the interval covers both
    which sequences and which training runs happened to be drawn. With few runs the run part of the
    spread is coarse (a bootstrap over n runs sees (n-1)/n of their variance), so the per-run values
    are reported as well.
    """
    if resamples < 1:
        raise CompareError(f"resamples={resamples} must be at least 1")
    if not 0 < level < 1:
        raise CompareError(f"level={level} must lie in (0, 1)")
    runs_a, runs_b = _runs(base, "base"), _runs(other, "other")
    names = paired_sequences(runs_a[0], runs_b[0], _run_label("base", 0, runs_a), _run_label("other", 0, runs_b))
    for side, runs in (("base", runs_a), ("other", runs_b)):
        for i in range(1, len(runs)):
            paired_sequences(runs_a[0], runs[i], _run_label("base", 0, runs_a), _run_label(side, i, runs))
    a = [np.stack(x) for x in zip(*(_stack(r, names) for r in runs_a), strict=True)]  # (R, S, ...)
    b = [np.stack(x) for x in zip(*(_stack(r, names) for r in runs_b), strict=True)]
    n = len(names)
    protocol = tc_protocol(runs_a[0])
    per_run_a, per_run_b = _run_metrics(a, np.ones(n), protocol), _run_metrics(b, np.ones(n), protocol)  # (R, 2)
    point_a, point_b = per_run_a.mean(0), per_run_b.mean(0)
    rng = np.random.default_rng(seed)
    diffs = np.empty((resamples, 2))
    for i in range(resamples):
        w = np.bincount(rng.integers(0, n, n), minlength=n)  # how often each sequence was drawn
        ra = _draw_runs(rng, len(runs_a))
        rb = _draw_runs(rng, len(runs_b))
        diffs[i] = _run_metrics(b, w, protocol)[rb].mean(0) - _run_metrics(a, w, protocol)[ra].mean(0)
    lo, hi = np.nanquantile(diffs, [(1 - level) / 2, (1 + level) / 2], axis=0)
    classes = list(runs_a[0]["per_class_iou"])
    per_class = {}
    (iou_as, tc_as), (iou_bs, tc_bs) = _per_class(a, protocol), _per_class(b, protocol)
    for j, (iou_a, iou_b, tc_a, tc_b) in enumerate(zip(iou_as, iou_bs, tc_as, tc_bs, strict=True)):
        if np.isnan([iou_a, iou_b, tc_a, tc_b]).all():
            continue
        per_class[classes[j]] = {"iou": [_pct(iou_a), _pct(iou_b)], "tc": [_pct(tc_a), _pct(tc_b)]}
    out: dict[str, Any] = {"sequences": n, "runs": [len(runs_a), len(runs_b)], "tc_protocol": protocol,
                           "resamples": resamples,
                           "level": level, "seed": seed, "per_class": per_class}
    for k, key in enumerate(("miou", "tc")):
        out[key] = {"base": float(point_a[k]), "other": float(point_b[k]),
                    "difference": float(point_b[k] - point_a[k]),
                    "interval": [float(lo[k]), float(hi[k])],
                    "p_not_better": float(np.mean(diffs[:, k] <= 0)),
                    "base_runs": [float(v) for v in per_run_a[:, k]],
                    "other_runs": [float(v) for v in per_run_b[:, k]]}
    return out


def _runs(side: dict[str, Any] | Sequence[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    runs = [side] if isinstance(side, dict) else list(side)
    if not runs:
        raise CompareError(f"{label} has no results")
    return runs


def _run_label(side: str, i: int, runs: list[dict[str, Any]]) -> str:
    return side if len(runs) == 1 else f"{side} run {i + 1}"


def _draw_runs(rng: np.random.Generator, r: int) -> np.ndarray:
    return np.zeros(1, np.int64) if r == 1 else rng.integers(0, r, r)


def _run_metrics(x: list[np.ndarray], w: np.ndarray, protocol: str) -> np.ndarray:
    """(R, 2): mIoU and TC of every run over the sequences weighted by ``w`` (S,)."""
    conf, inter, union = (np.tensordot(xi, w, axes=([1], [0])) for xi in x)
    return np.array([_metrics(conf[r], inter[r], union[r], protocol) for r in range(conf.shape[0])])


def _per_class(x: list[np.ndarray], protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and TC, each run over all its sequences, averaged over runs."""
    conf, inter, union = (xi.sum(1) for xi in x)
    iou = [iou_per_class(conf[r]) for r in range(conf.shape[0])]
    tc = [TC_FORMULAS[protocol][1](inter[r], union[r]) for r in range(conf.shape[0])]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from every run stays NaN
        return np.nanmean(np.array(iou, float), 0), np.nanmean(np.array(tc, float), 0)


def _pct(v: float) -> float | None:
    return None if np.isnan(v) else 100 * float(v)


def markdown(cmp: dict[str, Any], base_label: str = "base", other_label: str = "other") -> str:
    pct = round(100 * cmp["level"])
    runs = cmp.get("runs", [1, 1])
    if max(runs) == 1:
        title = f"{cmp['sequences']} sequences, paired bootstrap over sequences ({cmp['resamples']} resamples)"
    else:
        title = (f"{cmp['sequences']} sequences, {runs[0]} runs of {base_label} and {runs[1]} of {other_label} "
                 f"(each side: mean over its runs); bootstrap over sequences (paired) and runs "
                 f"({cmp['resamples']} resamples)")
    lines = [title, "",
             f"| metric | {base_label} | {other_label} | difference | {pct}% interval | share of resamples <= 0 |",
             "|---|---|---|---|---|---|"]
    protocol = cmp.get("tc_protocol", "stt_ros")
    for key, label in (("miou", "mIoU (%)"), ("tc", f"TC (%, {protocol} protocol)")):
        m = cmp[key]
        lo, hi = m["interval"]
        lines.append(f"| {label} | {m['base']:.2f} | {m['other']:.2f} | {m['difference']:+.2f} | "
                     f"[{lo:+.2f}, {hi:+.2f}] | {m['p_not_better']:.3f} |")
    if max(runs) > 1:
        lines += ["", f"| run | {base_label} mIoU / TC | {other_label} mIoU / TC |", "|---|---|---|"]
        for i in range(max(runs)):
            cells = [f"{cmp['miou'][side][i]:.2f} / {cmp['tc'][side][i]:.2f}" if i < len(cmp["miou"][side]) else "-"
                     for side in ("base_runs", "other_runs")]
            lines.append(f"| {i + 1} | {cells[0]} | {cells[1]} |")
    lines += ["", f"TC per class: {protocol} protocol", "",
              f"| class | IoU {base_label} | IoU {other_label} | TC {base_label} | TC {other_label} "
                  f"| TC difference |", "|---|---|---|---|---|---|"]
    for name, c in cmp["per_class"].items():
        (ia, ib), (ta, tb) = c["iou"], c["tc"]
        diff = "-" if ta is None or tb is None else f"{tb - ta:+.1f}"
        lines.append(f"| {name} | {_f(ia)} | {_f(ib)} | {_f(ta)} | {_f(tb)} | {diff} |")
    return "\n".join(lines) + "\n"


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(
        "stt-compare", "Compare stt-eval results of the same sequences: mIoU and TC differences with a bootstrap "
        "interval (paired over sequences; over runs too where a side has several training runs, e.g. seeds), and "
        "per-class IoU/TC.",
        ["stt-eval --weights base.safetensors --dataset synthdrive --root data/sd --json base.json",
         "stt-eval --weights stt.safetensors --dataset synthdrive --root data/sd --json stt.json",
         "stt-compare base.json stt.json --labels BiSe18 STT-BiSe18",
         "stt-compare --base bise_s0.json bise_s1.json bise_s2.json --other stt_s0.json stt_s1.json stt_s2.json"])
    parser.add_argument("files", nargs="*", metavar="BASE OTHER",
                        help="stt-eval --json results of the reference model and of the model compared with it")
    parser.add_argument("--base", nargs="+", metavar="JSON",
                        help="instead of BASE OTHER: one result per training run of the reference recipe")
    parser.add_argument("--other", nargs="+", metavar="JSON", help="one result per run of the compared recipe")
    parser.add_argument("--labels", nargs=2, default=("base", "other"), metavar=("BASE", "OTHER"))
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the comparison as JSON here")
    args = parser.parse_args(argv)
    if args.files and (args.base or args.other):
        parser.error("give either BASE OTHER or --base ... --other ..., not both")
    if args.files and len(args.files) != 2:
        parser.error(f"BASE OTHER are two files, got {len(args.files)}; several runs per side go in --base/--other")
    if not args.files and not (args.base and args.other):
        parser.error("give BASE OTHER, or --base and --other")
    base, other = (args.files[:1], args.files[1:]) if args.files else (args.base, args.other)
    try:
        cmp = compare([_load(f) for f in base], [_load(f) for f in other], args.resamples, args.seed, args.level)
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
