"""Every kind of corrupt checkpoint (tests/checkpoint_corpus.py) through the library loader and through the app.

The library must raise CheckpointError naming the file and the field or tensor at fault, or load correctly (then
the weights equal the valid checkpoint's). The app, with the broken checkpoint picked in the sidebar, must show
that message under the checkpoint's name, raise nothing, and keep working: picking the default checkpoint again
answers as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from app_harness import answer_headlines, assert_clean, assert_no_exception, open_page, start_app
from app_toy_assets import build_assets
from checkpoint_corpus import CODE_RAN, KINDS, build_corpus
from streamlit.testing.v1 import AppTest

from app.loading import holds_checkpoint
from app.state import CANNOT_RUN
from lxmert.checkpoints import CheckpointError, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
DEFAULT = "default/model"


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    return build_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="module")
def corpus(assets, tmp_path_factory) -> dict[str, Path]:
    return build_corpus(assets / "default" / "model", tmp_path_factory.mktemp("corpus"))


def test_the_corpus_has_at_least_twenty_distinct_kinds_of_fault():
    names = [kind.name for kind in KINDS]
    assert len(set(names)) == len(names)
    assert sum(kind.fault is not None for kind in KINDS) >= 20


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_the_loader_names_the_fault_or_loads_correctly(kind, corpus, assets):
    directory = corpus[kind.name]
    if kind.fault is None:
        with pytest.warns(UserWarning, match=kind.warning) if kind.warning else contextlib.nullcontext():
            loaded = load_checkpoint(directory)
        valid = load_checkpoint(assets / "default" / "model")
        expected = valid.model.state_dict()
        for key, value in loaded.model.state_dict().items():
            # float16 weights round to 11 significant bits
            torch.testing.assert_close(value, expected[key], rtol=1e-3, atol=1e-4, msg=key)
        assert loaded.answers == valid.answers and loaded.tokenizer.vocab == valid.tokenizer.vocab
    else:
        with pytest.raises(CheckpointError) as raised:
            load_checkpoint(directory)
        message = str(raised.value)
        assert re.search(kind.fault, message, re.DOTALL), message
        assert str(directory) in message  # the file at fault is named with its path
    assert not (directory / CODE_RAN).exists()


@pytest.mark.slow
def test_sizes_at_the_bounds_are_refused_before_any_memory_is_allocated(corpus):
    """A config that passes its field checks but disagrees with the weights is refused on a meta-device skeleton.

    Built for real it would take 60 GB; the child process's peak resident memory shows that nothing near that was
    allocated (the torch import alone takes a few hundred MB).
    """
    # VmHWM is this process's own peak: getrusage's ru_maxrss would also count the parent's peak before exec
    # (a test suite that loaded a base model earlier in the same process would then fail this test).
    code = (
        "import re, sys\n"
        "from lxmert.checkpoints import CheckpointError, load_checkpoint\n"
        "try:\n"
        "    load_checkpoint(sys.argv[1])\n"
        "except CheckpointError as err:\n"
        "    print('refused:', str(err).splitlines()[0])\n"
        "status = open('/proc/self/status').read()\n"
        "print('peak_kib', re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(corpus["config_at_size_bounds"])],
        capture_output=True, text=True, env=env, timeout=300, check=True,
    )  # fmt: skip
    assert "refused:" in result.stdout and "does not fit this config" in result.stdout, result.stdout
    peak_gib = int(re.search(r"peak_kib (\d+)", result.stdout).group(1)) / 2**20
    assert peak_gib < 2.0, f"peak resident memory {peak_gib:.2f} GiB"


@pytest.fixture(scope="module")
def app(assets, corpus):
    with pytest.MonkeyPatch.context() as patch:
        yield start_app(assets, patch, checkpoints=next(iter(corpus.values())).parent)


def _pick(app: AppTest, name: str) -> AppTest:
    return app.sidebar.selectbox(key="checkpoint").set_value(name).run()


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_the_app_shows_the_fault_and_stays_usable(kind, corpus, app):
    directory = corpus[kind.name]
    # A checkpoint whose headers show the fault is listed marked, and says why when picked.
    listed = [name.removesuffix(CANNOT_RUN) for name in app.sidebar.selectbox(key="checkpoint").options]
    if kind.name not in listed:
        # The scan lists only directories with config.json, model.safetensors and vocab.txt as files.
        assert not holds_checkpoint({p.name for p in directory.iterdir() if p.is_file()})
    else:
        _pick(app, kind.name)
        assert_no_exception(app)
        errors = [e.value for e in app.error]
        if kind.fault is None:
            assert not errors, errors
            assert answer_headlines(app)
        else:
            assert len(errors) == 1, errors
            assert f"Checkpoint `{kind.name}` cannot be loaded" in errors[0]
            assert re.search(kind.fault, errors[0], re.DOTALL), errors[0]
    _pick(app, DEFAULT)
    assert_clean(app)
    assert answer_headlines(app)
    assert not (directory / CODE_RAN).exists()


@pytest.mark.slow
def test_comparing_with_a_broken_checkpoint_compares_the_others(app):
    _pick(app, DEFAULT)
    page = open_page(app, "compare")
    page.multiselect(key="compare_checkpoints").set_value(
        [DEFAULT, "weights_all_nan", "default/pretrained"]
    ).run()
    assert_no_exception(page)
    errors = [e.value for e in page.error]
    assert len(errors) == 1 and "`weights_all_nan` cannot be loaded" in errors[0], errors
    assert page.get("plotly_chart"), "the two checkpoints that load were not compared"
    open_page(app, "ask")


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, damage, fault",
    [
        ("model.safetensors", _cut, r"detector/model\.safetensors is not a readable safetensors file"),
        (
            "objects_vocab.txt",
            lambda path: path.write_bytes(bytes(range(256))),
            r"objects_vocab\.txt is not UTF-8",
        ),
    ],
)
def test_a_broken_detector_is_a_message_naming_its_file(assets, tmp_path, monkeypatch, name, damage, fault):
    root = tmp_path / "assets"
    shutil.copytree(assets, root)
    damage(root / "default" / "detector" / name)
    app = start_app(root, monkeypatch)
    assert_no_exception(app)
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and re.search(fault, errors[0]), errors
