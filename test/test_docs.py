"""The user docs stay a guide, and every command they show works.

README.md is a user guide of at most 300 lines (studies go to docs/experiments/). Every command in
a fenced block of README.md and docs/**/*.md is either run here, in document order, and must exit
0, or is listed in LONG_RUNNING with the reason it is not run (a training, a GPU, a ROS install,
the user's own files). A new doc command is therefore checked unless someone says why not.

What counts as a command:
* ```bash / ```sh / ```shell blocks: every line that is not empty or a comment; a line ending in
  ``\\`` continues on the next, and a ``for``/``while``/``if`` runs to its ``done``/``fi``;
* ```console and bare ``` blocks: the lines that start with ``$ `` (anything else is output);
* ```python blocks: the whole block is one program.

Commands run in a scratch copy of the repository (its files, not its Python packages, which come
from the venv as everywhere else), with the venv's bin first on PATH and os.environ passed
through (the suite's conftest has set ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a ROS_DOMAIN_ID),
so nothing a command writes lands in the working tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 300
COMMAND_TIMEOUT_S = 120

TRAINING = "a training run: minutes to hours (docs/TRAINING.md)"
TRAINED = "needs checkpoints or stt-eval results of trainings above: minutes to hours"
ROS_INSTALL = "needs a ROS 2 install with rosdep/colcon/ros2 (not on PyPI or Debian)"
GPU = "needs an NVIDIA GPU and TensorRT"
USER_FILES = "names the user's own bag, model or dataset (placeholder paths)"
DATASET = "generates or evaluates a full SynthDrive split: a minute or more on 2 cores"
RESEARCH = "research command, see docs/experiments/README.md; needs trained runs (minutes to hours)"

#: normalised command prefix (comments stripped, whitespace collapsed) -> why it is not run here
LONG_RUNNING: dict[str, str] = {
    # README.md
    "make demo": "sets up .venv, generates a bag and replays it through the node over DDS, ~30 s+",
    "make test": "the whole suite: ruff and every test, many minutes (this test is part of it)",
    "cd ~/ros2_ws/src": ROS_INSTALL,
    "PIP_BREAK_SYSTEM_PACKAGES=1 rosdep install": ROS_INSTALL,
    "pip install -r src/stt_ros/requirements-ros.txt": "installs packages into the environment (a ROS 2 install)",
    "colcon build": ROS_INSTALL,
    "source install/setup.bash": ROS_INSTALL,
    "ros2 launch stt_ros stt.launch.py": ROS_INSTALL + "; starts the node until stopped",
    "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=42 .venv/bin/python -m stt_ros.ros.node":
        "starts the node, which runs until stopped (test/ros covers it)",
    "stt-bag-eval drive_bag": USER_FILES,
    "stt-bag-eval drive.mcap": USER_FILES,
    "python -m stt_train.synthdrive --out data/synthdrive ": DATASET,
    "python -m stt_train.train ": TRAINING,
    "nice -n 10 python -m stt_train.train ": TRAINING,
    "torchrun ": TRAINING + "; 8 processes, a GPU machine",
    "python -m stt_train.evaluate --weights runs/": TRAINED,
    "stt-compare base.json stt.json": TRAINED,
    # docs/TRAINING.md
    "python -m stt_train.evaluate --weights models/stt_bise18_synthdrive.safetensors --dataset synthdrive "
    "--root data/synthdrive_heldout": DATASET + " (needs the held-out set of docs/MODEL_CARD.md)",
    # docs/MODEL_CARD.md
    "python -m stt_train.release runs/": TRAINED,
    "python -m stt_train.synthdrive --out data/synthdrive_heldout ": DATASET,
    "OMP_NUM_THREADS=1 python bench/bench_demo_fps.py": "a benchmark over the held-out set with a trained baseline",
    # docs/DEPLOY.md
    "stt-tensorrt ": GPU,
    "cfg = load_config(": "a fragment showing the runtime interface (no imports; the .onnx it names comes from "
                          "stt-export above, and docs/DEPLOY.md's backends are tested in test/deploy)",
    # docs/ROBUSTNESS.md
    ".venv/bin/python -m pytest": "runs a test suite (about 1 to 3 minutes); part of make test",
    "STT_FUZZ_SCALE=10 .venv/bin/python -m pytest": "10x the fuzz examples, about 3 minutes",
    "ROS_DOMAIN_ID=173 .venv/bin/python bench/bench_soak.py": "5000 frames through the node, about 3.5 minutes",
    ".venv/bin/python bench/bench_cpu_contention.py": "a benchmark that loads every core for minutes",
    # docs/experiments/: the studies' own commands
    "python -m stt_train.synthdrive --out data/sd": DATASET,
    "python -m stt_train.compare ": TRAINED,
    "python -m stt_train.research.": RESEARCH,
    "for s in 0 1 2; do": TRAINING + " (three seeds per model)",
}


@dataclass(frozen=True)
class Command:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the command's first line
    kind: str  # "shell" or "python"
    text: str  # what runs
    key: str  # one line, comments stripped, whitespace collapsed: what LONG_RUNNING matches

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.key[:160]}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def strip_comment(line: str) -> str:
    """The line without its shell comment (a # outside quotes at the start or after a blank)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def normalise(text: str) -> str:
    lines = [strip_comment(line) for line in text.splitlines()]
    return " ".join(" ".join(lines).replace("\\ ", " ").split()).rstrip("\\ ").strip()


FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, 1-based line of the first content line, lines) of every fenced block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m[1]), m[2].lower(), i + 1
        j = start
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        blocks.append((lang, start + 1, [line[indent:] if line[:indent].isspace() else line.lstrip()
                                         for line in lines[start:j]]))
        i = j + 1
    return blocks


DEPTH_UP, DEPTH_DOWN = {"do", "then"}, {"done", "fi"}


def shell_commands(lines: list[str], first_line: int, prompt_only: bool) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start, depth, i = 0, 0, 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        if not current:
            if prompt_only:
                if not raw.startswith("$ "):
                    continue
                raw = raw[2:]
            if not strip_comment(raw).strip():
                continue
            start = first_line + i - 1
        current.append(raw)
        if raw.rstrip().endswith("\\"):
            continue
        words = strip_comment(raw).replace(";", " ").split()
        depth += sum(w in DEPTH_UP for w in words) - sum(w in DEPTH_DOWN for w in words)
        if depth > 0:
            continue
        out.append((start, "\n".join(current)))
        current, depth = [], 0
    if current:
        out.append((start, "\n".join(current)))
    return out


def doc_commands(path: Path) -> list[Command]:
    doc = str(path.relative_to(ROOT))
    commands = []
    for lang, first, lines in fenced_blocks(path.read_text()):
        if lang == "python":
            text = "\n".join(lines) + "\n"
            commands.append(Command(doc, first, "python", text, normalise(text)))
        elif lang in {"bash", "sh", "shell", "console", ""}:
            for line, text in shell_commands(lines, first, prompt_only=lang in {"console", ""}):
                commands.append(Command(doc, line, "shell", text, normalise(text)))
    return commands


def matches(key: str, command: Command) -> bool:
    return command.key.startswith(" ".join(key.split()))


def listed(command: Command) -> str | None:
    """Why the command is not run (the most specific LONG_RUNNING entry), or None: it runs."""
    hits = [key for key in LONG_RUNNING if matches(key, command)]
    return LONG_RUNNING[max(hits, key=len)] if hits else None


ALL = [c for path in doc_files() for c in doc_commands(path)]


def test_readme_is_a_guide_of_at_most_300_lines() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move details to docs/ "
        "(TRAINING.md, MODEL_CARD.md, experiments/)")


def test_the_docs_have_commands_and_every_long_running_entry_is_used() -> None:
    assert sum(c.doc == "README.md" for c in ALL) >= 10
    assert any(c.kind == "python" for c in ALL)
    unused = [key for key in LONG_RUNNING if not any(matches(key, c) for c in ALL)]
    assert not unused, f"LONG_RUNNING entries no doc command starts with (remove them): {unused}"


def test_the_readme_keeps_the_tc_definition_slot() -> None:
    text = (ROOT / "README.md").read_text()
    assert "## Temporal consistency" in text


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_between_the_docs_resolve() -> None:
    broken = []
    for path in doc_files():
        for target in LINK.findall(path.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            if not (path.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, f"links to files that do not exist: {broken}"


def test_the_docs_name_no_design_md() -> None:
    """The repository has no DESIGN.md; a doc pointing there points nowhere."""
    assert not [str(p.relative_to(ROOT)) for p in doc_files() if "DESIGN.md" in p.read_text()]


def scratch_copy(dest: Path) -> Path:
    """The repository's files (tracked and untracked, not ignored) under dest, without the Python
    packages' sources, so `python -m stt_train...` imports the installed package."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        top = rel.split("/", 1)[0]
        if not src.is_file() or (top in {"stt_ros", "stt_train", "test"} and rel.endswith(".py")):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    venv = Path(sys.prefix)
    if venv != Path(sys.base_prefix):
        (dest / ".venv").symlink_to(venv)
    return dest


def run_command(command: Command, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MPLBACKEND", "Agg")
    if command.kind == "python":
        args = [sys.executable, "-c", command.text]
    else:
        args = ["bash", "-e", "-o", "pipefail", "-c", command.text]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


RUN_DOCS = sorted({c.doc for c in ALL if listed(c) is None})


@pytest.mark.slow
@pytest.mark.parametrize("doc", RUN_DOCS)
def test_doc_commands_run(doc: str, tmp_path: Path) -> None:
    """Each command of the doc that is not in LONG_RUNNING runs, in document order, and exits 0."""
    assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST" and os.environ.get("ROS_DOMAIN_ID")
    cwd = scratch_copy(tmp_path / "repo")
    for command in (c for c in ALL if c.doc == doc and listed(c) is None):
        try:
            proc = run_command(command, cwd)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command} ran over {COMMAND_TIMEOUT_S} s: make it quicker or list it in LONG_RUNNING")
        assert proc.returncode == 0, (
            f"{command} exited {proc.returncode} (fix the doc, or list it in LONG_RUNNING with a reason)\n"
            f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
