"""Training: loss, schedule, configs, exact resume, and torchrun (2 gloo processes) == 1 process."""

from __future__ import annotations

import ast
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from stt_ros.model.zoo import MODEL_NAMES
from stt_train.config import ConfigError, load_experiment
from stt_train.losses import OhemCELoss
from stt_train.train import TrainingInterrupted, lr_at, main, run

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "stt_train" / "configs"
SMALL = CONFIGS / "synthdrive_stt_bise18.yaml"


def test_ohem_keeps_hard_pixels_per_image() -> None:
    loss = OhemCELoss(thresh=0.7, min_kept=0.25)
    # two classes; logits give p(true) = sigmoid(d) per pixel
    d = torch.tensor([[4.0, 4.0, 4.0, -1.0], [4.0, 4.0, 4.0, 4.0]])  # image 0: one hard pixel; image 1: none
    logits = torch.stack([d, torch.zeros_like(d)], 1)[..., None]  # (2, 2, 4, 1), true class 0
    label = torch.zeros(2, 4, 1, dtype=torch.long)
    ce = torch.nn.functional.softplus(-d)  # -log sigmoid(d)
    expected = (ce[0, 3] + ce[1].max()) / 2  # image 0: its hard pixel; image 1: its top 25 % (one pixel)
    assert loss(logits, label).item() == pytest.approx(expected.item(), rel=1e-4)
    label[0, 3, 0] = 255  # ignored pixels never count
    assert loss(logits, label).item() == pytest.approx(((ce[0, :3].max()) + ce[1].max()).item() / 2, rel=1e-4)
    label[:] = 255
    assert loss(logits, label).item() == 0.0


def test_poly_learning_rate_with_warmup() -> None:
    cfg = load_experiment(SMALL, ["train.lr=0.1", "train.iters=110", "train.warmup_iters=10",
                                  "train.warmup_ratio=0.1"])
    assert lr_at(0, cfg) == pytest.approx(0.01)
    assert lr_at(5, cfg) == pytest.approx(0.055)
    assert lr_at(10, cfg) == pytest.approx(0.1)
    assert lr_at(60, cfg) == pytest.approx(0.1 * 0.5 ** 0.9)
    assert lr_at(110, cfg) == 0.0


def test_every_zoo_model_has_cityscapes_and_camvid_configs() -> None:
    for dataset, classes in (("cityscapes", 19), ("camvid", 11)):
        for name in MODEL_NAMES:
            cfg = load_experiment(CONFIGS / f"{dataset}_{name}.yaml")
            assert cfg.model.model == name and cfg.model.num_classes == classes and cfg.data.dataset == dataset
            assert cfg.train.batch_size >= 8 and cfg.train.ohem_thresh == 0.7 and cfg.train.sync_bn
    for path in CONFIGS.glob("*.yaml"):
        load_experiment(path)  # every shipped config is valid
    # each STT SynthDrive config and its per-frame baseline are trained identically
    for stt_name, base_name in (("synthdrive_stt_bise18", "synthdrive_bise18"),
                                ("synthdrive_stt_bise18_ft", "synthdrive_bise18_ft")):
        stt = yaml.safe_load((CONFIGS / f"{stt_name}.yaml").read_text())
        base = yaml.safe_load((CONFIGS / f"{base_name}.yaml").read_text())
        assert base["model"]["model"] == "bise18" and stt["model"]["model"] == "stt_bise18"
        assert base["data"] == stt["data"] and {k: v for k, v in base["train"].items() if k != "out_dir"} == \
            {k: v for k, v in stt["train"].items() if k != "out_dir"}


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="iterz"):
        load_experiment(SMALL, ["train.iterz=3"])
    with pytest.raises(ConfigError, match="data.crop"):
        load_experiment(SMALL, ["data.crop=[100, 200]"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {model: stt_bise18}\nextra: {}\n")
    with pytest.raises(ConfigError, match="extra"):
        load_experiment(bad)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tiny_run, tmp_path: Path) -> None:
    full = run(load_experiment(SMALL, tiny_run(tmp_path / "a")), progress=False)
    with pytest.raises(TrainingInterrupted):
        run(load_experiment(SMALL, tiny_run(tmp_path / "b")), progress=False, stop_after=3)
    assert json.loads((tmp_path / "b/checkpoints/latest.json").read_text())["iteration"] == 2
    assert not (tmp_path / "b/final.safetensors").exists()
    resumed = run(load_experiment(SMALL, tiny_run(tmp_path / "b")), resume=True, progress=False)
    assert resumed["losses"] == full["losses"][2:]
    a, b = load_file(tmp_path / "a/final.safetensors"), load_file(tmp_path / "b/final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # checkpoints: the newest two kept, each a model the runtime loads, plus the training state
    names = sorted(p.name for p in (tmp_path / "b/checkpoints").iterdir())
    assert names == ["iter_0000004.safetensors", "iter_0000004.state.safetensors", "iter_0000005.safetensors",
                     "iter_0000005.state.safetensors", "latest.json"]
    logged = [json.loads(line) for line in (tmp_path / "a/log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in logged] == [1, 2, 3, 4, 5] and list((tmp_path / "a/tb").iterdir())


def test_cli_refuses_to_overwrite_a_run_and_to_resume_nothing(tiny_run, tmp_path: Path, capsys) -> None:
    assert main(["--config", str(SMALL), "--resume", "--no-progress", "--set",
                 *tiny_run(tmp_path / "none")]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    ckpt = tmp_path / "run/checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "latest.json").write_text("{}")
    assert main(["--config", str(SMALL), "--no-progress", "--set", *tiny_run(tmp_path / "run")]) == 2
    assert "pass --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "torchrun" in capsys.readouterr().out


def test_init_weights_from_a_per_frame_checkpoint(tmp_path: Path) -> None:
    from stt_ros.config import STTConfig
    from stt_ros.model.zoo import build_model
    from stt_ros.weights import WeightsError, save_weights
    from stt_train.train import init_from

    base = build_model(STTConfig(model="bise18"))
    save_weights(base, tmp_path / "base.safetensors")
    stt = build_model(STTConfig(model="stt_bise18"))
    before = stt.stt.q_proj.weight.clone()
    init_from(stt, str(tmp_path / "base.safetensors"))
    assert torch.equal(stt.segnet.conv_out.conv_out.weight, base.segnet.conv_out.conv_out.weight)
    assert torch.equal(stt.stt.q_proj.weight, before)  # the transformer keeps its initialisation
    save_weights(build_model(STTConfig(model="bise18", num_classes=11)), tmp_path / "camvid.safetensors")
    with pytest.raises(WeightsError, match="nothing was loaded"):
        init_from(stt, str(tmp_path / "camvid.safetensors"))


def test_stt_zero_init_starts_as_the_per_frame_network(tmp_path: Path) -> None:
    from stt_ros.weights import save_weights
    from stt_train.train import initial_model

    small = ["model.input_height=64", "model.input_width=128", "model.key_frames=2"]
    plain = initial_model(load_experiment(SMALL, small)).eval()
    zero = initial_model(load_experiment(SMALL, [*small, "train.stt_zero_init=true"])).eval()
    base = initial_model(load_experiment(CONFIGS / "synthdrive_bise18.yaml", small)).eval()
    # the same seed gives the same per-frame weights with or without the transformer
    assert all(torch.equal(a, b) for a, b in zip(zero.segnet.state_dict().values(), base.segnet.state_dict().values(),
                                                 strict=True))
    assert not zero.stt.out_proj.weight.any() and plain.stt.out_proj.weight.abs().sum() > 0
    clip = torch.randn(2, 3, 3, 64, 128)
    with torch.no_grad():
        per_frame = base(clip[:, -1]).logits
        assert (zero.forward_clip(clip).logits - per_frame).abs().max() < 1e-4
        assert not torch.allclose(plain.forward_clip(clip).logits, per_frame, atol=1e-3)
    # a checkpoint given as init_weights wins over the zero start
    save_weights(plain, tmp_path / "stt.safetensors")
    loaded = initial_model(load_experiment(SMALL, [*small, "train.stt_zero_init=true",
                                                    f"train.init_weights={tmp_path / 'stt.safetensors'}"]))
    assert torch.equal(loaded.stt.out_proj.weight, plain.stt.out_proj.weight)


def test_freeze_per_frame_trains_only_the_transformer(tiny_run, tmp_path: Path) -> None:
    from stt_train.train import initial_model

    base_cfg = load_experiment(CONFIGS / "synthdrive_bise18.yaml", tiny_run(tmp_path / "base", **{"train.iters": 3}))
    run(base_cfg, progress=False)
    init = f"train.init_weights={tmp_path / 'base/final.safetensors'}"
    cfg = load_experiment(SMALL, tiny_run(tmp_path / "stt", **{"train.iters": 3})
                          + [init, "train.freeze_per_frame=true"])
    start = initial_model(cfg).state_dict()
    run(cfg, progress=False)
    trained = load_file(tmp_path / "stt/final.safetensors")
    segnet = [k for k in start if k.startswith("segnet.") and k in trained]
    stt = [k for k in start if k.startswith("stt.")]
    assert len(segnet) > 100 and stt
    # weights and BatchNorm running statistics of the per-frame network are exactly those loaded
    assert any(k.endswith("running_mean") for k in segnet)
    assert all(torch.equal(trained[k], start[k]) for k in segnet)
    assert all(torch.equal(trained[k], load_file(tmp_path / "base/final.safetensors")[k]) for k in segnet)
    assert sum(not torch.equal(trained[k], start[k]) for k in stt) == len(stt)
    # without freezing, the same run moves the per-frame network too
    run(load_experiment(SMALL, tiny_run(tmp_path / "all", **{"train.iters": 3}) + [init]),
        progress=False)
    moved = load_file(tmp_path / "all/final.safetensors")
    assert not all(torch.equal(moved[k], start[k]) for k in segnet)
    with pytest.raises(ConfigError, match="init_weights"):
        load_experiment(SMALL, ["train.freeze_per_frame=true"])
    with pytest.raises(ConfigError, match="no temporal transformer"):
        load_experiment(CONFIGS / "synthdrive_bise18.yaml", ["train.freeze_per_frame=true", init])


def _train_cli(args: list[str], env_extra: dict[str, str], timeout: int = 300) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: a timeout ends every worker
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process(tiny_run, tmp_path: Path) -> None:
    """Same global batch of 4 clips: one process with 4, or two gloo processes with 2 each (DDP,
    BatchNorm synchronised). The first loss agrees to float tolerance, and so do the weights after
    the first updates. Losses of later iterations are not compared tightly: the two runs' float
    sums round differently, and OHEM's hard-pixel threshold turns a rounding difference into a
    pixel kept or not (seen: 1.5 % apart by the third iteration with identical code)."""
    common = ["--config", str(SMALL), "--no-progress", "--set"]
    extra = ["train.batch_size=4", "train.iters=3", "train.optimizer=sgd", "train.lr=0.01", "train.ckpt_interval=1",
             "train.keep_checkpoints=3"]
    _train_cli([sys.executable, "-m", "stt_train.train", *common, *tiny_run(tmp_path / "one"),
                *extra], {})
    _train_cli([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "stt_train.train", *common, *tiny_run(tmp_path / "two"), *extra],
               {"TORCH_CPP_LOG_LEVEL": "ERROR"})
    one = [json.loads(s)["loss"] for s in (tmp_path / "one/log.jsonl").read_text().splitlines()]
    two = [json.loads(s)["loss"] for s in (tmp_path / "two/log.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 3
    assert all(math.isfinite(v) for v in one + two)
    assert two[0] == pytest.approx(one[0], rel=1e-5)
    assert two[1] == pytest.approx(one[1], rel=1e-2)
    assert two[2] == pytest.approx(one[2], rel=3e-2)
    step1 = Path("checkpoints") / "iter_0000001.safetensors"
    w1, w2 = load_file(str(tmp_path / "one" / step1)), load_file(str(tmp_path / "two" / step1))
    assert w1.keys() == w2.keys()
    for k in w1:  # the first update is the same (max difference measured: 1e-5)
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-3, atol=1e-4, msg=k)


def test_no_ros_imports_in_stt_train() -> None:
    ros = {"rclpy", "rosidl_runtime_py", "rosbag2_py", "sensor_msgs", "std_msgs", "builtin_interfaces", "cv_bridge",
           "launch", "launch_ros", "stt_ros.ros", "stt_ros.msg"}
    offences = []
    for path in (ROOT / "stt_train").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offences += [f"{path.name}: {n}" for n in names if n in ros or n.split(".")[0] in ros
                         or any(n.startswith(r + ".") for r in ros)]
    assert not offences, offences


def test_research_switches_are_not_stt_train_options(tmp_path: Path) -> None:
    """train.memory / train.temporal_weight moved to python -m stt_train.research.train: stt-train refuses them
    (and a research section) naming where they went, and still loads an older run's config.yaml, which holds
    them switched off."""
    for extra in (["train.memory=current"], ["train.temporal_weight=1.0"]):
        with pytest.raises(ConfigError, match="stt_train.research.train"):
            load_experiment(SMALL, extra)
    old = yaml.safe_load(SMALL.read_text())
    old["train"] = {**old.get("train", {}), "memory": "past", "temporal_weight": 0.0}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    assert load_experiment(tmp_path / "old.yaml").to_dict() == load_experiment(SMALL).to_dict()
    (tmp_path / "research.yaml").write_text(yaml.safe_dump({**old, "research": {"memory": "current"}}))
    with pytest.raises(ConfigError, match="section 'research'.*stt_train.research.train"):
        load_experiment(tmp_path / "research.yaml")
    with pytest.raises(ConfigError, match="section model, data or train"):
        load_experiment(SMALL, ["research.memory=current"])
