"""``python -m lxmert.hub download`` and hub ids in ``load_checkpoint``, without the network.

The hub is a cache directory laid out as huggingface_hub lays one out (``models--owner--name/blobs``,
``snapshots/<commit>/<file>`` linking to a blob, ``refs/main``), holding tiny stand-ins that transformers wrote in the
published layout; HF_HUB_OFFLINE=1 (tests/conftest.py) makes huggingface_hub answer from it alone. The answer tables
come from an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from lxmert_helpers import perturb_, transformers_config

import lxmert
from lxmert.answers import AnswerTable
from lxmert.checkpoints import MissingCheckpointFileError
from lxmert.config import LxmertConfig
from lxmert.detection import Detector, DetectorConfig, FasterRCNNWithAttributes
from lxmert.errors import EXIT_UNREADABLE_FILE, run_cli
from lxmert.hub import main
from lxmert.model_sets import read_model_set
from lxmert.tokenization import SPECIAL_TOKENS

transformers = pytest.importorskip("transformers")

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
ANSWERS = {"vqa": ["yes", "no", "2", "red", "cat"], "gqa": ["left", "right", "table", "man"]}
VOCAB = [*SPECIAL_TOKENS, *(f"word{i}" for i in range(99 - len(SPECIAL_TOKENS)))]


def fill_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """Lay ``files`` out in huggingface_hub's cache layout; returns the snapshot directory."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir()
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def _files(model, directory: Path) -> dict[str, bytes]:
    """What the published repos hold: transformers 4.x's torch.save of the state dict and its config.json."""
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    model.config.to_json_file(directory / "config.json")
    return {name: (directory / name).read_bytes() for name in ("config.json", "pytorch_model.bin")}


@pytest.fixture(scope="module")
def stand_ins() -> dict[str, object]:
    """Tiny random models in transformers' layout, by item: base (pre-training), vqa and gqa (QA); every
    parameter perturbed, so that no zero bias matches another model's by chance."""

    def config(labels: int):
        return transformers_config(
            LxmertConfig.preset(
                "tiny",
                vocab_size=99,
                num_object_labels=11,
                num_attr_labels=7,
                num_qa_labels=labels,
                visual_feat_dim=24,
            )
        )

    torch.manual_seed(5)
    return {
        "base": perturb_(transformers.LxmertForPreTraining(config(13))).eval(),
        "vqa": perturb_(transformers.LxmertForQuestionAnswering(config(len(ANSWERS["vqa"])))).eval(),
        "gqa": perturb_(transformers.LxmertForQuestionAnswering(config(len(ANSWERS["gqa"])))).eval(),
    }


@pytest.fixture
def cache(tmp_path: Path, stand_ins) -> Path:
    """A hub cache holding the three LXMERT repos (vocab.txt in the base repo only)."""
    cache = tmp_path / "hf-cache"
    for name, model in stand_ins.items():
        work = tmp_path / "written" / name
        work.mkdir(parents=True)
        files = _files(model, work)
        if name == "base":
            files["vocab.txt"] = "".join(t + "\n" for t in VOCAB).encode()
        fill_cache(cache, f"unc-nlp/lxmert-{name}-uncased", files)
    return cache


class Tables:
    """An HTTP server on 127.0.0.1 serving ``root``; ``hits`` lists the paths asked for."""

    def __init__(self, root: Path) -> None:
        self.root, self.hits = root, []
        tables = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                tables.hits.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/data"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def serve(self, task: str, body: str | list | dict) -> None:
        """Serve ``body`` (text as is, anything else as JSON) as the task's table."""
        path = self.root / "data" / task / "trainval_label2ans.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body if isinstance(body, str) else json.dumps(body))


@pytest.fixture
def tables(tmp_path: Path, monkeypatch) -> Tables:
    # An environment's proxy must not take the requests meant for the local server.
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    server = Tables(tmp_path / "www")
    for task, answers in ANSWERS.items():
        server.serve(task, answers)
    yield server
    server.server.shutdown()
    server.server.server_close()


def download(argv: list[str], cache: Path, tables: Tables, out: Path) -> None:
    run_cli(
        main, ["download", *argv, "--to", str(out), "--cache-dir", str(cache), "--tables-url", tables.url]
    )


def no_temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.endswith((".tmp", ".old"))]


def test_download_links_the_checkpoints_checks_the_tables_and_skips_all_of_it_the_second_time(
    tmp_path, cache, tables, stand_ins, capsys
) -> None:
    out = tmp_path / "real"
    download(["base", "vqa", "gqa"], cache, tables, out)
    printed = capsys.readouterr().out
    assert "model_set.json not written yet: no detector" in printed
    assert sorted(tables.hits) == ["/data/gqa/trainval_label2ans.json", "/data/vqa/trainval_label2ans.json"]

    blob = cache / "models--unc-nlp--lxmert-vqa-uncased" / "snapshots" / COMMIT / "pytorch_model.bin"
    assert os.path.samefile(out / "lxmert-vqa-uncased" / "pytorch_model.bin", blob)  # linked, not copied
    for name, model in stand_ins.items():
        loaded = lxmert.load_checkpoint(out / f"lxmert-{name}-uncased")
        theirs, ours = model.state_dict(), loaded.model.state_dict()
        for key in (
            "lxmert.encoder.x_layers.0.visual_attention.att.query.weight",
            "lxmert.pooler.dense.bias",
        ):
            assert torch.equal(ours[key], theirs[key]), (name, key)
        assert list(loaded.tokenizer.vocab) == VOCAB  # base's vocabulary, in every checkpoint
        if name in ANSWERS:
            assert torch.equal(ours["answer_head.logit_fc.3.weight"], theirs["answer_head.logit_fc.3.weight"])
            table = AnswerTable.load(out / f"lxmert-{name}-uncased" / "trainval_label2ans.json")
            assert table.label2ans == ANSWERS[name]
    assert no_temporaries(out) == []

    inodes = {p: p.stat().st_ino for p in out.rglob("*") if p.is_file()}
    download(["base", "vqa", "gqa"], cache, tables, out)
    assert len(tables.hits) == 2, "a valid table is not fetched again"
    assert {p: p.stat().st_ino for p in out.rglob("*") if p.is_file()} == inodes
    assert "wrote" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (["yes", "no"], r"holds 2 answers, but the checkpoint's QA head has 5 rows"),
        (["yes", "no", 2, "red", "cat"], r"answer 2 is a int"),
        (["yes", "no", "no", "red", "cat"], r"'no' appears twice"),
        ({"yes": 0}, r"must be a JSON list of answers, got a dict"),
        ("<html>rate limited</html>", r"not UTF-8 JSON"),
        (None, r"the server answered 404"),
    ],
)
def test_a_bad_or_missing_table_is_refused_by_name_and_nothing_is_written(
    tmp_path, cache, tables, body, reason, capsys
) -> None:
    if body is None:
        (tables.root / "data" / "vqa" / "trainval_label2ans.json").unlink()
    else:
        tables.serve("vqa", body)
    out = tmp_path / "real"
    with pytest.raises(SystemExit) as exit_:
        download(["vqa"], cache, tables, out)
    assert exit_.value.code == EXIT_UNREADABLE_FILE
    err = capsys.readouterr().err
    target = out / "lxmert-vqa-uncased" / "trainval_label2ans.json"
    assert err.startswith(f"error: {target}: ") and len(err.strip().splitlines()) == 1
    assert re.search(reason, err), err
    assert not target.exists() and no_temporaries(out) == []


def test_an_unreachable_or_non_http_tables_url_is_named_with_where_the_table_goes(
    tmp_path, cache, capsys
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/data"
    target = tmp_path / "real" / "lxmert-vqa-uncased" / "trainval_label2ans.json"
    for url, reason in ((closed, "it cannot be reached"), ("file:///etc", "is not an http(s) URL")):
        argv = [
            "download",
            "vqa",
            "--to",
            str(tmp_path / "real"),
            "--cache-dir",
            str(cache),
            "--tables-url",
            url,
        ]
        with pytest.raises(SystemExit):
            run_cli(main, argv)
        err = capsys.readouterr().err
        assert err.startswith(f"error: {target}: ") and reason in err, err
        assert not target.exists()


def test_an_invalid_table_already_there_is_fetched_again(tmp_path, cache, tables) -> None:
    target = tmp_path / "real" / "lxmert-gqa-uncased" / "trainval_label2ans.json"
    target.parent.mkdir(parents=True)
    target.write_text('["truncated", ')
    download(["gqa"], cache, tables, tmp_path / "real")
    assert json.loads(target.read_text()) == ANSWERS["gqa"] and tables.hits == [
        "/data/gqa/trainval_label2ans.json"
    ]


def test_offline_with_nothing_cached_says_what_is_missing_and_where_to_put_it(
    tmp_path, tables, capsys
) -> None:
    empty, out = tmp_path / "empty-cache", tmp_path / "real"
    with pytest.raises(SystemExit) as exit_:
        download(["vqa"], empty, tables, out)
    assert exit_.value.code == EXIT_UNREADABLE_FILE
    err = capsys.readouterr().err
    folder = empty / "models--unc-nlp--lxmert-vqa-uncased"
    assert err.startswith(
        f"error: {folder}: unc-nlp/lxmert-vqa-uncased's config.json is not in the Hugging Face"
    )
    assert "HF_HUB_OFFLINE is set" in err and "`python -m lxmert.hub download vqa --to DIR`" in err
    assert len(err.strip().splitlines()) == 1
    assert tables.hits == [] and list((out / "lxmert-vqa-uncased").iterdir()) == []


@pytest.mark.slow  # a fresh interpreter imports torch: about 10 s on this machine
def test_the_module_runs_as_a_command_and_fails_offline_in_one_line(tmp_path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    argv = ["download", "gqa", "--to", str(tmp_path / "real"), "--cache-dir", str(tmp_path / "empty")]
    done = subprocess.run(
        [sys.executable, "-m", "lxmert.hub", *argv], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == EXIT_UNREADABLE_FILE, done.stderr
    assert done.stderr.startswith("error: ") and "unc-nlp/lxmert-gqa-uncased's config.json" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def _tiny_detector(directory: Path) -> None:
    config = DetectorConfig.preset(
        "small",
        small_channels=(8, 16, 32),
        feature_dim=24,
        num_classes=3,
        num_attributes=2,
        class_embed_dim=8,
        attr_hidden_dim=16,
        num_regions=4,
    )
    Detector(FasterRCNNWithAttributes(config), ["a", "b", "c"], ["x", "y"]).save_pretrained(directory)


def test_a_directory_with_a_detector_gets_a_model_set_of_every_complete_checkpoint(
    tmp_path, cache, tables
) -> None:
    out = tmp_path / "real"
    _tiny_detector(out / "frcnn-vg-finetuned")
    download(["gqa", "vqa"], cache, tables, out)
    model_set = read_model_set(out)
    assert (model_set.world, model_set.detector) == ("real", (out / "frcnn-vg-finetuned").resolve())
    assert list(model_set.checkpoints) == ["vqa", "gqa"] and model_set.default == "vqa"  # base: not fetched
    for name, entry in model_set.checkpoints.items():
        assert entry.path == (out / f"lxmert-{name}-uncased").resolve()
        assert entry.answers == entry.path / "trainval_label2ans.json" and entry.vocab is None

    download(["base"], cache, tables, out)  # a later run completes the set
    assert list(read_model_set(out).checkpoints) == ["base", "vqa", "gqa"]


class TouchOnLoad:
    """A pickle payload: unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_detector_pickle_asking_for_code_is_refused_and_never_runs(tmp_path, tables, capsys) -> None:
    cache, marker = tmp_path / "hf-cache", tmp_path / "ran"
    work = tmp_path / "evil.bin"
    torch.save({"backbone.stem.conv1.weight": torch.zeros(2), "trap": TouchOnLoad(marker)}, work)
    fill_cache(cache, "unc-nlp/frcnn-vg-finetuned", {"pytorch_model.bin": work.read_bytes()})
    with pytest.raises(SystemExit):
        download(["detector"], cache, tables, tmp_path / "real")
    assert "pytorch_model.bin: refused: its pickle asks for" in capsys.readouterr().err
    assert not marker.exists(), "the payload ran"
    assert list((tmp_path / "real").iterdir()) == []


def test_load_checkpoint_reads_a_hub_id_from_the_local_cache_only(
    tmp_path, cache, stand_ins, monkeypatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # read at import otherwise
    monkeypatch.chdir(tmp_path)
    loaded = lxmert.load_checkpoint("unc-nlp/lxmert-gqa-uncased")
    key = "answer_head.logit_fc.3.weight"
    assert torch.equal(loaded.model.state_dict()[key], stand_ins["gqa"].state_dict()[key])
    assert Path(loaded.model.load_report.source).parent == cache / "models--unc-nlp--lxmert-gqa-uncased" / (
        "snapshots/" + COMMIT
    )

    # A path that exists is a path, as in transformers: the local directory wins over the cached repo.
    local = tmp_path / "unc-nlp" / "lxmert-gqa-uncased"
    local.mkdir(parents=True)
    _files(stand_ins["vqa"], local)
    assert lxmert.load_checkpoint("unc-nlp/lxmert-gqa-uncased").model.config.num_qa_labels == len(
        ANSWERS["vqa"]
    )

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(MissingCheckpointFileError) as missing:
        lxmert.load_checkpoint("unc-nlp/lxmert-vqa-uncased")
    message = str(missing.value)
    assert message.startswith(str(tmp_path / "empty" / "models--unc-nlp--lxmert-vqa-uncased"))
    assert "no config.json and no model.safetensors or pytorch_model.bin" in message
    assert "`python -m lxmert.hub download vqa --to DIR`" in message
    with pytest.raises(MissingCheckpointFileError, match="`hf download someone/else`"):
        lxmert.load_checkpoint("someone/else")


@pytest.mark.slow  # a full-size detector stand-in: 260 MB written, converted and written again
def test_download_everything_converts_the_detector_and_writes_a_set_that_loads(
    tmp_path, cache, tables, stand_ins, capsys
) -> None:
    from butd_layouts import demo_state_dict, detectron2_weights

    weights = detectron2_weights(seed=3)
    work = tmp_path / "frcnn.bin"
    torch.save(demo_state_dict(weights), work)
    fill_cache(cache, "unc-nlp/frcnn-vg-finetuned", {"pytorch_model.bin": work.read_bytes()})
    work.unlink()
    out = tmp_path / "real"
    download([], cache, tables, out)  # no WHAT: all four
    assert f"model set ready: {(out / 'model_set.json').resolve()}" in capsys.readouterr().out

    model_set = read_model_set(out)
    assert list(model_set.checkpoints) == ["base", "vqa", "gqa"] and model_set.world == "real"
    detector = Detector.from_pretrained(model_set.detector)
    assert (len(detector.objects_vocab), len(detector.attributes_vocab)) == (1600, 400)
    state = detector.model.state_dict()
    for key in ("backbone.stem.conv1.weight", "roi_heads.box_predictor.attr_score.bias"):
        assert torch.equal(state[key], torch.from_numpy(weights[key]))
    source = json.loads((model_set.detector / "source.json").read_text())
    assert source == {"repo": "unc-nlp/frcnn-vg-finetuned", "revision": COMMIT, "file": "pytorch_model.bin"}
    for entry in model_set.checkpoints.values():
        loaded = lxmert.load_checkpoint(entry.path)
        if entry.answers is not None:
            assert len(AnswerTable.load(entry.answers)) == loaded.model.config.num_qa_labels

    converted = (model_set.detector / "model.safetensors").stat()
    download(["detector"], cache, tables, out)
    assert f"kept {out / 'frcnn-vg-finetuned'}" in capsys.readouterr().out
    again = (model_set.detector / "model.safetensors").stat()
    assert (again.st_ino, again.st_mtime_ns) == (converted.st_ino, converted.st_mtime_ns)
    assert no_temporaries(out) == []
