"""No code runs from a file: every pickle load in the repository is restricted, and a ``__reduce__`` payload is
refused by every path that loads a file (library, CLIs, trainer and detector resume, the app), with a clean error.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_toy import build as build_finetune_toy
from PIL import Image

from lxmert.checkpoints import load_checkpoint, read_state_dict
from lxmert.errors import EXIT_UNREADABLE_FILE, UnreadableFileError

ROOT = Path(__file__).parent.parent
# Where a restricted unpickler (a pickle.Unpickler subclass whose find_class allows named classes only) may live:
# the reader of detectron2's .pkl weights.
RESTRICTED_UNPICKLER_HOME = "lxmert/detection/"
UNSAFE_LOADERS = {  # module -> functions that unpickle whatever a file names
    "pickle": {"load", "loads", "Unpickler"},
    "_pickle": {"load", "loads", "Unpickler"},
    "dill": {"load", "loads"},
    "cloudpickle": {"load", "loads"},
    "joblib": {"load"},
    "shelve": {"open"},
}
TORCH_LOADERS = {"torch": "load", "torch.serialization": "load"}


# ----------------------------------------------------------------------------------------------------------------
# (a) the code: every load is a restricted one
# ----------------------------------------------------------------------------------------------------------------


def _python_files() -> list[Path]:
    """Every Python file of the repository (hidden directories such as .venv and .git aside)."""
    return sorted(
        p for p in ROOT.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    )


def _module_aliases(tree: ast.Module) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Local names of imported modules (``import torch as T`` → T: torch) and of imported functions."""
    modules: dict[str, str] = {}
    functions: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    modules[alias.asname] = alias.name
                else:  # ``import torch.serialization`` binds ``torch``
                    modules[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                functions[alias.asname or alias.name] = (node.module, alias.name)
                modules.setdefault(alias.asname or alias.name, f"{node.module}.{alias.name}")
    return modules, functions


def _called(
    node: ast.Call, modules: dict[str, str], functions: dict[str, tuple[str, str]]
) -> tuple[str, str]:
    """(module, function) of a call such as ``torch.load(...)``, ``T.serialization.load(...)`` or ``load(...)``."""
    func = node.func
    if isinstance(func, ast.Name) and func.id in functions:
        return functions[func.id]
    if isinstance(func, ast.Attribute):
        parts = [func.attr]
        value = func.value
        while isinstance(value, ast.Attribute):
            parts.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in modules:
            dotted = ".".join([modules[value.id], *reversed(parts[1:])])
            return dotted, func.attr
    return "", ""


def _keyword_is_true(node: ast.Call, name: str) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords
    )


def _restricted_unpicklers(tree: ast.Module) -> dict[str, tuple[int, bool]]:
    """Classes deriving from an ``Unpickler`` → their line and whether they override ``find_class``."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("Unpickler") for b in node.bases):
            found[node.name] = (
                node.lineno,
                any(isinstance(item, ast.FunctionDef) and item.name == "find_class" for item in node.body),
            )
    return found


def unsafe_loads(source: str, name: str) -> list[str]:
    """Each call in ``source`` (the file ``name``, relative to the repository) that could unpickle code, as
    ``name:line: what``."""
    tree = ast.parse(source, filename=name)
    modules, functions = _module_aliases(tree)
    problems: list[tuple[int, str]] = []
    for cls, (line, overrides) in _restricted_unpicklers(tree).items():
        if not overrides or not name.startswith(RESTRICTED_UNPICKLER_HOME):
            problems.append(
                (line, f"{name}:{line}: class {cls} unpickles outside the allowed restricted reader")
            )
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        module, function = _called(node, modules, functions)
        where = f"{name}:{node.lineno}: {module}.{function}"
        if TORCH_LOADERS.get(module) == function and not _keyword_is_true(node, "weights_only"):
            problems.append((node.lineno, f"{where} without weights_only=True"))
        elif function in UNSAFE_LOADERS.get(module, ()):
            problems.append((node.lineno, where))
        elif module == "numpy" and function == "load" and _keyword_is_true(node, "allow_pickle"):
            problems.append((node.lineno, f"{where} with allow_pickle=True"))
    return [text for _, text in sorted(problems)]


RESTRICTED_READER = """
import pickle

class Weights(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")

def read(f):
    return Weights(f).load()
"""


def test_the_scan_finds_each_kind_of_unsafe_load() -> None:
    probe = """
import pickle
import numpy as np
import torch as T
import torch.serialization
from pickle import loads as undo
T.load("a")
T.load("a", map_location="cpu",
       weights_only=False)
T.load("a", weights_only=True)
torch.serialization.load("a")
pickle.load(open("a", "rb"))
pickle.Unpickler(open("a", "rb")).load()
undo(b"")
np.load("a", allow_pickle=True)
np.load("a")

class Open(pickle.Unpickler):
    pass
"""
    found = unsafe_loads(probe, "lxmert/detection/probe.py")
    assert [f.split(":")[1] for f in found] == ["7", "8", "11", "12", "13", "14", "15", "18"], found
    assert unsafe_loads(RESTRICTED_READER, "lxmert/detection/weights_pkl.py") == []
    assert len(unsafe_loads(RESTRICTED_READER, "training/weights_pkl.py")) == 1  # only in its one home


def test_no_code_in_the_repository_unpickles_without_restriction() -> None:
    files = _python_files()
    assert {"lxmert/checkpoints.py", "training/engine/trainer.py", "tests/conftest.py"} <= {
        p.relative_to(ROOT).as_posix() for p in files
    }
    problems = [
        problem
        for path in files
        for problem in unsafe_loads(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    ]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------------------------
# (b) a payload through every load path
# ----------------------------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, Path]:
    """A torch.save'd checkpoint-like dict with a payload inside, and the marker file it would create."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "payload.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "state": Payload(marker)}, path)
    return path, marker


def test_the_payload_is_live_when_loaded_unrestricted(payload: tuple[Path, Path]) -> None:
    # The control: an unrestricted load does run it, so a test that never sees the marker shows a refusal, not a
    # dud payload. This string is the repository's one unrestricted load, of the test's own payload, in a
    # throwaway interpreter (the scan above reads calls, not strings).
    path, marker = payload
    unrestricted = "import sys, torch; torch.load(sys.argv[1], weights_only=False)"
    subprocess.run([sys.executable, "-c", unrestricted, str(path)], check=True, capture_output=True)
    assert marker.exists()


def test_the_library_refuses_the_payload_in_every_file_form(
    payload: tuple[Path, Path], tmp_path: Path
) -> None:
    path, marker = payload
    for name in ("weights.bin", "weights.pth", "weights.pt"):
        shutil.copy(path, tmp_path / name)
        with pytest.raises(UnreadableFileError, match="refused.*posix.system") as refused:
            read_state_dict(tmp_path / name)
        assert refused.value.path == tmp_path / name
        with pytest.raises(UnreadableFileError):
            load_checkpoint(tmp_path / name)
    directory = tmp_path / "transformers-layout"
    directory.mkdir()
    shutil.copy(path, directory / "pytorch_model.bin")
    with pytest.raises(UnreadableFileError, match="pytorch_model.bin"):
        load_checkpoint(directory)
    assert not marker.exists()


def test_the_app_refuses_the_payload(
    finetune_toy: dict[str, Path], payload: tuple[Path, Path], tmp_path: Path
) -> None:
    from app.loading import load_model

    path, marker = payload
    toy = finetune_toy
    # Our layout with a pickle where the safetensors file should be (what the app lists), and the transformers
    # layout whose weights are a pickle.
    for weights in ("model.safetensors", "pytorch_model.bin"):
        directory = tmp_path / weights
        shutil.copytree(toy["init"], directory)
        (directory / "model.safetensors").unlink()
        shutil.copy(path, directory / weights)
        with pytest.raises(UnreadableFileError, match=weights):
            load_model(str(directory), weights, "cpu")
    assert not marker.exists()


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    # No progress bars (byo extracts before it loads --init): stderr holds only what the command says.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def assert_one_line(result: subprocess.CompletedProcess, path: Path, marker: Path) -> str:
    """The payload did not run, and the command failed with one line naming ``path``; returns that line."""
    assert not marker.exists(), "the payload ran"
    assert result.returncode == EXIT_UNREADABLE_FILE, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert str(path) in lines[0], lines[0]
    return lines[0]


def assert_refused_in_one_line(result: subprocess.CompletedProcess, path: Path, marker: Path) -> None:
    line = assert_one_line(result, path, marker)
    assert "refused" in line, line


@pytest.fixture(scope="module")
def finetune_toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_finetune_toy(tmp_path_factory.mktemp("toy"))


def _finetune(toy: dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    return _run_cli(
        "training.finetune", "vqa", "--data", str(toy["vqa"]), "--features", str(toy["features"]),
        "--train", "train", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--threads", "1", *args,
    )  # fmt: skip


@pytest.mark.slow
def test_finetune_refuses_a_payload_as_init(
    finetune_toy: dict[str, Path], payload: tuple[Path, Path], tmp_path: Path
) -> None:
    path, marker = payload
    init = tmp_path / "init.pth"
    shutil.copy(path, init)
    vocab = str(finetune_toy["init"] / "vocab.txt")
    result = _finetune(finetune_toy, "--init", str(init), "--vocab", vocab, "--output", str(tmp_path / "run"))
    assert_refused_in_one_line(result, init, marker)


@pytest.mark.slow
def test_trainer_resume_refuses_a_payload_last_pt(
    finetune_toy: dict[str, Path], payload: tuple[Path, Path], tmp_path: Path
) -> None:
    path, marker = payload
    output = tmp_path / "run"
    output.mkdir()
    shutil.copy(path, output / "last.pt")  # resume is on by default
    result = _finetune(finetune_toy, "--init", str(finetune_toy["init"]), "--output", str(output))
    assert_refused_in_one_line(result, output / "last.pt", marker)


@pytest.mark.slow
def test_byo_refuses_a_payload_as_init(
    finetune_toy: dict[str, Path], payload: tuple[Path, Path], detector_dir: Path, tmp_path: Path
) -> None:
    path, marker = payload
    images = tmp_path / "images"
    images.mkdir()
    lines = ["image,question,answer"]
    for i in range(4):
        Image.new("RGB", (48, 40), (40 * i, 90, 200)).save(images / f"{i}.png")
        lines.append(f"{i}.png,What colour is it?,{'red' if i % 2 else 'blue'}")
    (tmp_path / "questions.csv").write_text("\n".join(lines) + "\n")
    result = _run_cli(
        "training.byo", "--images", str(images), "--questions", str(tmp_path / "questions.csv"),
        "--out", str(tmp_path / "byo"), "--detector", str(detector_dir), "--init", str(path),
        "--vocab", str(finetune_toy["init"] / "vocab.txt"), "--epochs", "1", "--batch-size", "4",
        "--device", "cpu", "--threads", "1",
    )  # fmt: skip
    assert_refused_in_one_line(result, path, marker)


def _detector_world(root: Path) -> Path:
    from training.world.generate import annotation
    from training.world.scenes import render_scene, sample_scene, write_vocab_files

    write_vocab_files(root)
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for index in range(2):
        scene = sample_scene(rng, size=64, num_objects=2)
        render_scene(scene).save(root / "images" / f"train_{index}.png")
        entries.append(annotation(f"train_{index}", scene))
    (root / "annotations" / "train.json").write_text(json.dumps(entries))
    tiny = dict(small_channels=(8, 16), feature_dim=32, min_size=64, max_size=64, anchor_sizes=(8, 16, 32),
                class_embed_dim=8, attr_hidden_dim=16, num_regions=12)  # fmt: skip
    (root / "tiny.json").write_text(json.dumps(tiny))
    return root


@pytest.mark.slow
def test_detector_training_refuses_a_payload_checkpoint_on_resume(
    payload: tuple[Path, Path], tmp_path: Path
) -> None:
    path, marker = payload
    world = _detector_world(tmp_path / "world")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(path, work / "checkpoint.pt")
    result = _run_cli(
        "training.detector", "--world", str(world), "--out", str(tmp_path / "detector"), "--work-dir", str(work),
        "--detector-config", str(world / "tiny.json"), "--train-splits", "train", "--steps", "2",
        "--batch-size", "1", "--num-threads", "1", "--resume",
    )  # fmt: skip
    assert_refused_in_one_line(result, work / "checkpoint.pt", marker)


def test_the_benchmarks_refuse_a_payload_in_one_line(
    payload: tuple[Path, Path], detector_dir: Path, tmp_path: Path
) -> None:
    path, marker = payload
    result = _run_cli(
        "benchmarks.analysis_speed", "--checkpoint", str(path), "--repeats", "1", "--warmup", "0"
    )
    assert_refused_in_one_line(result, path, marker)
    # A detector whose weights file is the pickle: safetensors never unpickles, it refuses the file.
    detector = tmp_path / "detector"
    shutil.copytree(detector_dir, detector)
    shutil.copy(path, detector / "model.safetensors")
    for command in (
        ["benchmarks.extraction_speed", "--images", "1"],
        ["benchmarks.analysis_speed", "--image", "x"],
    ):
        result = _run_cli(*command, "--detector", str(detector))
        assert_one_line(result, detector / "model.safetensors", marker)


def test_a_command_given_a_file_that_is_no_image_says_so_in_one_line(tmp_path: Path) -> None:
    # The detector's ImageError is an input error like a refused file: run_cli reports it, not a traceback.
    image, never = tmp_path / "photo.png", tmp_path / "never-created"
    image.write_bytes(b"not an image")
    result = _run_cli(
        "benchmarks.analysis_speed", "--detector", str(ROOT / "assets/default/detector"), "--image", str(image),
        "--repeats", "1", "--warmup", "0",
    )  # fmt: skip
    assert "cannot read image" in assert_one_line(result, image, never)
