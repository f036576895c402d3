"""Training checkpoints: model weights and training state as safetensors, no pickles.

A checkpoint at iteration i is two files in ``<out_dir>/checkpoints/``:

* ``iter_<i>.safetensors``: the model (``stt_ros.weights.save_weights``, config in the metadata,
  so the node and ``stt-eval`` load it directly);
* ``iter_<i>.state.safetensors``: optimizer tensors (``opt/<param>/<key>``), the RNG states of
  every process (``rng/<rank>/torch``, ``rng/<rank>/cuda/<device>``, ``rng/<rank>/numpy``) and, in
  the metadata as JSON, the iteration, optimizer param groups and scalar state, the AMP scaler, the
  Python RNG states and the experiment config.

Both are written atomically, then ``latest.json`` (naming them) is replaced atomically: a crash at
any moment leaves the previous complete checkpoint as the latest.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stt_ros.weights import atomic_write, save_weights

LATEST = "latest.json"


class CheckpointError(ValueError):
    """A checkpoint is missing or inconsistent; the message says which file and what to do."""


def rng_state() -> dict[str, Any]:
    """This process's RNG states: tensors and JSON-able values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {"torch": torch.get_rng_state(),
           "numpy": torch.from_numpy(np.asarray(np_state[1], np.int64)),
           "numpy_meta": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
           "python": [py_state[0], list(py_state[1]), py_state[2]]}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    meta = state["numpy_meta"]
    np.random.set_state((meta[0], state["numpy"].numpy().astype(np.uint32), meta[1], meta[2], meta[3]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt_dir: str | Path, iteration: int, model: torch.nn.Module, model_config: dict[str, Any],
                    optimizer: torch.optim.Optimizer, scaler_state: dict[str, Any] | None,
                    rng_states: list[dict[str, Any]], experiment: dict[str, Any], keep: int = 2) -> Path:
    """Write the checkpoint of ``iteration`` and point ``latest.json`` at it; keep the newest ``keep``."""
    from safetensors.torch import save_file

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stem = f"iter_{iteration:07d}"
    weights = ckpt_dir / f"{stem}.safetensors"
    save_weights(model, weights, config=model_config, metadata={"iteration": str(iteration)})
    tensors: dict[str, torch.Tensor] = {}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in opt["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt/{pid}/{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    python_rng = []
    for rank, st in enumerate(rng_states):
        tensors[f"rng/{rank}/torch"] = st["torch"]
        tensors[f"rng/{rank}/numpy"] = st["numpy"]
        for d, cs in enumerate(st.get("cuda", [])):
            tensors[f"rng/{rank}/cuda/{d}"] = cs
        python_rng.append({"numpy_meta": st["numpy_meta"], "python": st["python"]})
    meta = {"iteration": str(iteration), "param_groups": json.dumps(opt["param_groups"]),
            "opt_scalars": json.dumps(scalars), "scaler": json.dumps(scaler_state or {}),
            "rng": json.dumps(python_rng), "experiment": json.dumps(experiment), "weights": weights.name}
    state = ckpt_dir / f"{stem}.state.safetensors"
    atomic_write(state, lambda tmp: save_file(tensors, tmp, metadata=meta))
    latest = {"iteration": iteration, "weights": weights.name, "state": state.name}
    atomic_write(ckpt_dir / LATEST, lambda tmp: Path(tmp).write_text(json.dumps(latest, indent=1)))
    # prune older checkpoints
    olds = sorted(ckpt_dir.glob("iter_*.state.safetensors"))
    for old in olds[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
        (ckpt_dir / old.name.replace(".state.safetensors", ".safetensors")).unlink(missing_ok=True)
    return weights


def find_latest(path: str | Path) -> Path:
    """``latest.json`` from an output folder, its checkpoints folder, or the file itself."""
    path = Path(path)
    for cand in (path, path / LATEST, path / "checkpoints" / LATEST):
        if cand.is_file() and cand.name == LATEST:
            return cand
    raise CheckpointError(f"no checkpoint to resume from: {path} holds no {LATEST} (nor checkpoints/{LATEST}); "
                          f"start without --resume, or point --resume at a run's output folder")


def load_checkpoint(latest: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    rank: int = 0) -> dict[str, Any]:
    """Load model and optimizer in place; returns iteration, scaler state and this rank's RNG state."""
    from safetensors import safe_open

    from stt_ros.weights import load_weights

    latest = Path(latest)
    info = json.loads(latest.read_text())
    weights, state = latest.parent / info["weights"], latest.parent / info["state"]
    for p in (weights, state):
        if not p.is_file():
            raise CheckpointError(f"{latest} names {p.name}, which does not exist; the checkpoint folder was "
                                  f"changed by hand: delete {latest} to start over")
    load_weights(model, weights)
    with safe_open(str(state), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    if int(meta["iteration"]) != info["iteration"]:
        raise CheckpointError(f"{state} is of iteration {meta['iteration']}, {latest} says {info['iteration']}")
    opt_state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt/"):
            _, pid, key = k.split("/", 2)
            opt_state.setdefault(int(pid), {})[key] = v
    for pid, sc in json.loads(meta["opt_scalars"]).items():
        opt_state.setdefault(int(pid), {}).update(sc)
    optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(meta["param_groups"])})
    py_rng = json.loads(meta["rng"])
    rng = None
    if rank < len(py_rng):
        rng = {"torch": tensors[f"rng/{rank}/torch"], "numpy": tensors[f"rng/{rank}/numpy"], **py_rng[rank]}
        cuda = sorted((k for k in tensors if k.startswith(f"rng/{rank}/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
        if cuda:
            rng["cuda"] = [tensors[k] for k in cuda]
    return {"iteration": info["iteration"], "scaler": json.loads(meta["scaler"]), "rng": rng,
            "experiment": json.loads(meta["experiment"])}
