"""Train a zoo model (per-frame baseline or STT) on video clips, on one process or many (torchrun).

Semi-supervised as in the paper: each clip holds T previous frames and the labelled target frame;
the previous frames run through the per-frame network without gradients (``train.grad_prev``
allows them), the temporal transformer's key/value projections always learn. The loss is OHEM
cross-entropy on the main head plus ``aux_weight`` times the auxiliary heads' OHEM losses; the
learning rate follows a linear warm-up then poly decay. The clip's network and its loss are an
:class:`Objective` (research code, :mod:`stt_train.research.train`, passes its own to :func:`run`).
With ``torchrun --nproc_per_node=N``
every process takes ``batch_size / N`` clips of each global batch (DistributedDataParallel, gloo
on CPU, nccl on GPU, BatchNorm statistics synchronised), so N processes compute the same loss as
one process with the whole batch. Augmentation draws come from a per-clip seed and RNG states are
checkpointed, so ``--resume`` continues exactly where an interrupted run stopped.

Outputs in ``train.out_dir``: ``checkpoints/`` (see :mod:`stt_train.checkpoint`), ``final.safetensors``
(the trained model, loadable by the node and stt-eval), ``config.yaml`` (the resolved experiment),
``tb/`` (TensorBoard scalars: loss, loss_main, loss_aux (the objective names it), lr, sec_per_iter).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from stt_ros.config import ConfigError
from stt_ros.model.zoo import VideoSegModel, build_model
from stt_ros.weights import WeightsError
from stt_train import distributed as dist_utils
from stt_train.augment import ClipAugment
from stt_train.checkpoint import (
    CheckpointError,
    find_latest,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from stt_train.cli import command_parser
from stt_train.config import ExperimentConfig, TrainConfig, load_experiment
from stt_train.datasets import DatasetError, build_dataset, collate
from stt_train.losses import OhemCELoss
from stt_train.sampler import ClipSampler


class TrainingInterrupted(RuntimeError):
    """Raised by ``run(stop_after=...)``: simulates a crash (no checkpoint is written at that point)."""


class ClipForward(nn.Module):
    """What DDP wraps: a clip -> (main logits, aux logits...) for the target frame."""

    def __init__(self, model: VideoSegModel, grad_prev: bool) -> None:
        super().__init__()
        self.model = model
        self.grad_prev = grad_prev

    def forward(self, clip: Tensor) -> tuple[Tensor, ...]:
        out = self.model.forward_clip(clip, grad_prev=self.grad_prev)
        return (out.logits, *out.aux)


class Objective:
    """What the loop trains: the clips it loads, the network it calls on a clip and the loss of the
    outputs. This one is the paper's semi-supervised objective: OHEM cross-entropy on the labelled
    target frame's main head plus ``aux_weight`` times its auxiliary heads'. Research code
    (:mod:`stt_train.research.train`) subclasses it and passes it to :func:`run`."""

    aux_name = "loss_aux"  # the logged name of the third loss term
    with_flow = False  # whether training clips carry their ground-truth flow

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.loss_fn = OhemCELoss(cfg.train.ohem_thresh, cfg.train.ohem_min_kept)

    @property
    def prev_frames(self) -> int:
        """Previous frames per training clip."""
        return self.cfg.prev_frames

    def network(self, model: VideoSegModel) -> nn.Module:
        """The module the loop calls (and DDP wraps): clip -> tuple of outputs."""
        return ClipForward(model, self.cfg.train.grad_prev)

    def inputs(self, clip: Tensor) -> Tensor:
        """The clip the network sees (B, N, 3, H, W)."""
        return clip

    def losses(self, outs: tuple[Tensor, ...], batch: dict[str, Any], device: torch.device
               ) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, main term, ``aux_name`` term) of the network's outputs on ``batch``."""
        label = batch["label"].to(device, non_blocking=True)
        main = self.loss_fn(outs[0], label)
        aux = sum((self.loss_fn(a, label) for a in outs[1:]), torch.zeros((), device=device))
        return main + self.cfg.train.aux_weight * aux, main, aux

    def config(self) -> dict[str, Any]:
        """The experiment as ``config.yaml`` and the checkpoints record it."""
        return self.cfg.to_dict()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(it: int, cfg) -> float:
    """Linear warm-up from ``warmup_ratio * lr`` over ``warmup_iters``, then poly decay to 0."""
    t = cfg.train
    if it < t.warmup_iters:
        return t.lr * (t.warmup_ratio + (1 - t.warmup_ratio) * it / t.warmup_iters)
    span = max(t.iters - t.warmup_iters, 1)
    return t.lr * (1 - min(it - t.warmup_iters, span) / span) ** t.poly_power


def param_groups(model: VideoSegModel, cfg) -> list[dict[str, Any]]:
    """Backbone vs the rest (``head_lr_mult``); no weight decay on BatchNorm and biases."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        backbone = name.startswith("segnet.backbone.")
        decay = p.ndim > 1
        groups.setdefault((backbone, decay), []).append(p)
    out = []
    for (backbone, decay), params in sorted(groups.items()):
        out.append({"params": params, "lr_mult": 1.0 if backbone else cfg.train.head_lr_mult,
                    "weight_decay": cfg.train.weight_decay if decay else 0.0})
    return out


def init_from(model: VideoSegModel, path: str) -> None:
    """Load a checkpoint of the same per-frame network; the temporal transformer (``stt.*``) may be
    absent (a per-frame baseline's checkpoint) and then keeps its initialisation. Anything else that
    does not fit is an error naming the keys, and nothing is loaded."""
    from stt_ros.model.loading import load_state_dict_report
    from stt_ros.weights import read_state_dict

    tensors, _ = read_state_dict(path)
    report = load_state_dict_report(model, tensors, dry_run=True)
    report.missing = [k for k in report.missing if not k.startswith("stt.")]
    if not report.complete:
        raise WeightsError(f"train.init_weights={path} does not fit {model.name}; nothing was loaded.\n"
                           f"{report.summary()}")
    load_state_dict_report(model, tensors)


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available; use train.device=cpu or auto")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


class ScalarLog:
    """TensorBoard scalars (``torch.utils.tensorboard``; the pinned ``tensorboard`` package) in ``tb/``,
    and the same scalars as JSON lines in ``log.jsonl`` (easy to read without TensorBoard)."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder))
        except ImportError:  # a pip install without the [train] extra: log.jsonl only
            print("stt-train: tensorboard is not installed (pip install tensorboard, or stt_ros[train]); "
                  "scalars go to log.jsonl only", file=sys.stderr)
            self.writer = None

        self.jsonl = open(folder.parent / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def add(self, scalars: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()
        self.jsonl.write(json.dumps({"iteration": step, **scalars}) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.jsonl.close()


def build_train_dataset(cfg: ExperimentConfig, objective: Objective | None = None):
    objective = objective or Objective(cfg)
    d = cfg.data
    aug = ClipAugment(crop=tuple(d.crop), scale=tuple(d.scale), base_size=tuple(d.base_size) if d.base_size else None,
                      flip=d.flip, color=d.color, pad_value=tuple(round(m * 255) for m in cfg.model.mean))
    return build_dataset(d.dataset, d.root, d.train_split, objective.prev_frames, d.stride, aug, cfg.model.mean,
                         cfg.model.std, with_flow=objective.with_flow)


def initial_model(cfg: ExperimentConfig) -> VideoSegModel:
    """The model before training: seeded random weights, then ``backbone_weights``, ``stt_zero_init`` and
    ``init_weights`` as configured (every process builds the same one)."""
    t = cfg.train
    seed_everything(t.seed)
    model = build_model(cfg.model)
    if t.backbone_weights:
        from stt_ros.weights import load_backbone

        load_backbone(model.segnet.backbone, t.backbone_weights)
    if t.stt_zero_init and model.stt is not None:
        # the residual update starts at zero: STT starts as its per-frame network (init_weights still wins)
        nn.init.zeros_(model.stt.out_proj.weight)
        nn.init.zeros_(model.stt.out_proj.bias)
    if t.init_weights:
        init_from(model, t.init_weights)
    for name, p in model.named_parameters():
        if name.startswith("segnet.backbone.fc."):  # the ImageNet classifier, kept only for loading
            p.requires_grad_(False)
    if t.freeze_per_frame:
        model.segnet.requires_grad_(False)
    return model


def set_train_mode(model: VideoSegModel, cfg: ExperimentConfig) -> None:
    """Training mode, except a frozen per-frame network, which runs as at inference (fixed BatchNorm
    statistics, so its features are exactly those of ``init_weights``)."""
    model.train()
    if cfg.train.freeze_per_frame:
        model.segnet.eval()


@dataclass
class Process:
    """Where this process trains: its rank among ``world_size`` torchrun processes, its device and its
    share of each global batch."""

    rank: int
    world_size: int
    device: torch.device
    distributed: bool
    local_bs: int


@dataclass
class Trainee:
    """The model, what the loop calls (``net``: DDP-wrapped where distributed), optimizer and AMP scaler."""

    model: VideoSegModel
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_amp: bool


@dataclass
class TrainData:
    dataset: Any
    sampler: ClipSampler
    per_epoch: int  # global batches per epoch


def start_process(t: TrainConfig) -> Process:
    """Device, process group and torch threads of this process; the local batch size."""
    rank, local_rank, world_size = dist_utils.world()
    device = pick_device(t.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed = dist_utils.init(device)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    if t.batch_size % world_size:
        raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by the {world_size} processes")
    return Process(rank, world_size, device, distributed, t.batch_size // world_size)


def build_trainee(cfg: ExperimentConfig, proc: Process, objective: Objective) -> Trainee:
    """The initial model on the process's device (identical on every process), wrapped for the loop,
    with its optimizer and AMP scaler."""
    t = cfg.train
    model = initial_model(cfg)
    if proc.distributed and t.sync_bn:
        model = dist_utils.convert_sync_bn(model, proc.device)
    model.to(proc.device)
    set_train_mode(model, cfg)
    net = objective.network(model)
    if proc.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device = proc.device
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False,
                                      # the transformer sits idle without previous frames or queries
                                      find_unused_parameters=model.temporal and (objective.prev_frames == 0
                                                                                  or cfg.model.query_ratio == 0))
    groups = param_groups(model, cfg)
    if t.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    else:
        optimizer = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    use_amp = t.amp and proc.device.type == "cuda"
    return Trainee(model, net, optimizer, torch.amp.GradScaler("cuda", enabled=use_amp), use_amp)


def build_data(cfg: ExperimentConfig, proc: Process, objective: Objective) -> TrainData:
    """The augmented training clips and this process's sampler over them."""
    t = cfg.train
    dataset = build_train_dataset(cfg, objective)
    per_epoch = len(dataset) // t.batch_size
    if per_epoch == 0:
        raise ConfigError(f"the training set has {len(dataset)} clips, fewer than train.batch_size={t.batch_size}")
    return TrainData(dataset, ClipSampler(len(dataset), proc.world_size, proc.rank, t.seed, proc.local_bs), per_epoch)


class Checkpoints:
    """``train.out_dir/checkpoints``: refuses to start over an existing run, restores one (``--resume``)
    and saves the model, optimizer, scaler and every process's RNG state."""

    def __init__(self, cfg: ExperimentConfig, proc: Process, trainee: Trainee, experiment: dict[str, Any]) -> None:
        self.cfg, self.proc, self.trainee, self.experiment = cfg, proc, trainee, experiment
        self.out_dir = Path(cfg.train.out_dir)
        self.dir = self.out_dir / "checkpoints"
        self.last = 0  # iteration of the newest checkpoint

    @staticmethod
    def refuse_existing(cfg: ExperimentConfig, proc: Process) -> None:
        """CheckpointError where ``train.out_dir`` already holds a run (a fresh run must not overwrite it)."""
        out_dir = Path(cfg.train.out_dir)
        if proc.rank == 0 and (out_dir / "checkpoints" / "latest.json").exists():
            raise CheckpointError(f"{out_dir} already holds a run (checkpoints/latest.json); pass --resume to "
                                  f"continue it, or choose another train.out_dir")

    def restore(self, resume: str | bool) -> int:
        """The iteration to start from: that of the latest checkpoint (model, optimizer, scaler and RNG
        states restored) or, without ``resume``, 0 with per-process RNG streams fixed by the seed."""
        t, rank, tr = self.cfg.train, self.proc.rank, self.trainee
        start = 0
        if resume:
            latest = find_latest(self.out_dir if resume is True else resume)
            state = load_checkpoint(latest, tr.model, tr.optimizer, rank)
            start = state["iteration"]
            if tr.use_amp and state["scaler"]:
                tr.scaler.load_state_dict(state["scaler"])
            if state["rng"] is not None:
                set_rng_state(state["rng"])
            if rank == 0:
                print(f"resumed from {latest} at iteration {start}", file=sys.stderr)
        else:
            seed_everything(t.seed * 1000 + rank)  # per-process streams (dropout), fixed by the seed
        self.last = start
        return start

    def save(self, i: int) -> None:
        states = [rng_state()]
        if self.proc.distributed:
            gathered: list[Any] = [None] * self.proc.world_size
            torch.distributed.all_gather_object(gathered, states[0])
            states = gathered
        if self.proc.rank == 0:
            tr, cfg = self.trainee, self.cfg
            save_checkpoint(self.dir, i, tr.model, cfg.model.to_dict(), tr.optimizer,
                            tr.scaler.state_dict() if tr.use_amp else None, states, self.experiment,
                            cfg.train.keep_checkpoints)
        self.last = i


def open_log(cfg: ExperimentConfig, proc: Process, experiment: dict[str, Any]) -> ScalarLog | None:
    """Rank 0: ``config.yaml`` (the resolved ``experiment``) and the scalar log; None on other ranks."""
    if proc.rank != 0:
        return None
    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from stt_ros.weights import atomic_write

    text = yaml.safe_dump(experiment, sort_keys=False)
    atomic_write(out_dir / "config.yaml", lambda tmp: Path(tmp).write_text(text))
    return ScalarLog(out_dir / "tb")


def train_step(objective: Objective, proc: Process, trainee: Trainee, batch: dict[str, Any], it: int,
               lr: float) -> tuple[Tensor, Tensor, Tensor]:
    """One optimizer step on ``batch`` (iteration ``it``, learning rate ``lr``); returns (loss, main, aux),
    detached."""
    device = proc.device
    for g in trainee.optimizer.param_groups:
        g["lr"] = lr * g["lr_mult"]
    clip = objective.inputs(batch["frames"].to(device, non_blocking=True))
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=trainee.use_amp):
        outs = trainee.net(clip)
    loss, main, aux = objective.losses(outs, batch, device)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} at iteration {it}; lower train.lr or check the data")
    trainee.optimizer.zero_grad(set_to_none=True)
    trainee.scaler.scale(loss).backward()
    trainee.scaler.step(trainee.optimizer)
    trainee.scaler.update()
    return loss.detach(), main.detach(), aux.detach()


def train_loop(cfg: ExperimentConfig, objective: Objective, proc: Process, trainee: Trainee, data: TrainData,
               ckpts: Checkpoints, log: ScalarLog | None, start: int, progress: bool, stop_after: int | None,
               max_iters_this_run: int | None) -> tuple[int, list[float], bool]:
    """Iterations ``start`` .. ``train.iters`` (or a pause); returns (iteration, losses of this run, paused)."""
    from tqdm import tqdm

    t = cfg.train
    losses: list[float] = []
    it, ran = start, 0
    t_last, it_last = time.perf_counter(), start
    with tqdm(total=t.iters, initial=start, desc=f"train {cfg.model.model}", unit="it",
              disable=not progress or proc.rank != 0, dynamic_ncols=True) as bar:
        while it < t.iters:
            epoch, offset = divmod(it, data.per_epoch)
            data.sampler.set_position(epoch, offset)
            loader = torch.utils.data.DataLoader(
                data.dataset, batch_size=proc.local_bs, sampler=data.sampler, num_workers=cfg.data.workers,
                collate_fn=collate, drop_last=True, pin_memory=proc.device.type == "cuda",
                generator=torch.Generator().manual_seed(t.seed * 7919 + epoch))
            for batch in loader:
                lr = lr_at(it, cfg)
                step = train_step(objective, proc, trainee, batch, it, lr)
                it += 1
                ran += 1
                vals = dist_utils.all_mean(torch.stack(step)).tolist()
                losses.append(vals[0])
                bar.update(1)
                if it % t.log_interval == 0 or it == t.iters:
                    now = time.perf_counter()
                    sec = (now - t_last) / max(it - it_last, 1)
                    t_last, it_last = now, it
                    bar.set_postfix(loss=f"{vals[0]:.3f}", lr=f"{lr:.2e}")
                    if log is not None:
                        log.add({"loss": vals[0], "loss_main": vals[1], objective.aux_name: vals[2], "lr": lr,
                                 "sec_per_iter": sec}, it)
                if it % t.ckpt_interval == 0 or it == t.iters:
                    ckpts.save(it)
                if stop_after is not None and ran >= stop_after:
                    raise TrainingInterrupted(f"stopped after {ran} iterations (simulated crash)")
                if max_iters_this_run is not None and ran >= max_iters_this_run and it < t.iters:
                    if ckpts.last != it:
                        ckpts.save(it)
                    return it, losses, True
                if it >= t.iters:
                    break
    return it, losses, False


def finish(cfg: ExperimentConfig, proc: Process, model: VideoSegModel, it: int, progress: bool) -> Path | None:
    """Rank 0: ``final.safetensors`` and, with ``train.eval_at_end``, ``eval.json``; then every process
    waits for it. Returns the final weights' path (None on other ranks)."""
    out_dir = Path(cfg.train.out_dir)
    final = None
    if proc.rank == 0:
        from stt_ros.weights import save_weights

        final = out_dir / "final.safetensors"
        save_weights(model, final, config=cfg.model.to_dict(), metadata={"iteration": str(it)})
        if cfg.train.eval_at_end:
            from stt_train.evaluate import evaluate_experiment

            evaluate_experiment(cfg, str(final), out_json=out_dir / "eval.json", progress=progress)
    if proc.distributed:
        torch.distributed.barrier()
    return final


def run(cfg: ExperimentConfig, resume: str | bool = False, stop_after: int | None = None,
        progress: bool = True, max_iters_this_run: int | None = None,
        objective: Objective | None = None) -> dict[str, Any]:
    """Train; returns {"iteration", "final" (path or None), "losses" (per iteration, this run)}.

    ``resume``: True = the latest checkpoint of ``train.out_dir``; a path = that run folder or its
    ``latest.json``. ``stop_after`` (tests): raise :class:`TrainingInterrupted` after that many
    iterations of this run *without* saving (a crash). ``max_iters_this_run``: stop cleanly with a
    checkpoint after that many iterations (time-sliced jobs; continue with --resume). ``objective``:
    what to train (default :class:`Objective`, the paper's).
    """
    objective = objective or Objective(cfg)
    experiment = objective.config()
    proc = start_process(cfg.train)
    if not resume:
        Checkpoints.refuse_existing(cfg, proc)
    trainee = build_trainee(cfg, proc, objective)  # identical initial weights on every process
    ckpts = Checkpoints(cfg, proc, trainee, experiment)
    data = build_data(cfg, proc, objective)
    start = ckpts.restore(resume)
    log = open_log(cfg, proc, experiment)
    try:
        it, losses, paused = train_loop(cfg, objective, proc, trainee, data, ckpts, log, start, progress, stop_after,
                                        max_iters_this_run)
    finally:
        if log is not None:
            log.close()
    if paused:
        return {"iteration": it, "final": None, "losses": losses}
    return {"iteration": it, "final": finish(cfg, proc, trainee.model, it, progress), "losses": losses}


def build_parser(prog: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """The training CLI's options (``stt-train`` and the research trainer share them)."""
    parser = command_parser(prog, description, examples)
    parser.add_argument("--config", required=True, help="experiment YAML (sections model, data, train)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                        help="override config values (repeatable), e.g. train.iters=100 data.root=/data/cityscapes")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                        help="continue from the latest checkpoint of train.out_dir (or of RUN_DIR)")
    parser.add_argument("--max-iters-this-run", type=int, default=None,
                        help="stop with a checkpoint after this many iterations (continue later with --resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def cli(argv: list[str] | None, parser: argparse.ArgumentParser,
        load: Callable[[str, list[str]], tuple[ExperimentConfig, Objective | None]]) -> int:
    """Parse ``argv``, ``load(config path, --set values)`` the experiment and its objective, train."""
    args = parser.parse_args(argv)
    try:
        cfg, objective = load(args.config, args.set)
        result = run(cfg, args.resume, progress=not args.no_progress, max_iters_this_run=args.max_iters_this_run,
                     objective=objective)
    except (ConfigError, DatasetError, CheckpointError, WeightsError, FloatingPointError, FileNotFoundError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if dist_utils.world()[0] == 0:
        if result["final"]:
            print(f"trained {result['iteration']} iterations; model: {result['final']}")
        else:
            print(f"paused at iteration {result['iteration']}; continue with --resume")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        "stt-train", __doc__.split("\n\n")[0],
        ["stt-train --config stt_train/configs/synthdrive_stt_bise18.yaml",
         "stt-train --config stt_train/configs/cityscapes_stt_bise18.yaml --set data.root=/data/cityscapes",
         "stt-train --config my.yaml --resume                    # continue train.out_dir's latest checkpoint",
         "stt-train --config my.yaml --set train.iters=20 train.out_dir=/tmp/smoke",
         "torchrun --nproc_per_node=2 -m stt_train.train --config my.yaml   # DDP (gloo on CPU, nccl on GPU)"])
    return cli(argv, parser, lambda path, overrides: (load_experiment(path, overrides), None))


if __name__ == "__main__":
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    sys.exit(main())
