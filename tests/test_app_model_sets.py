"""The app on model sets: found only inside its directories, checked before anything runs, honest about its world.

A set is a directory holding ``model_set.json``. The tests lay sets out under a checkpoints directory beside the toy
assets (tests/app_toy_assets.py, whose default set is synthetic): a mismatched one (the shipped 256-d synthetic
detector with a 2048-d model), one in the published layouts (the authors' task ``.pth`` with its
``trainval_label2ans.json`` and BERT's ``vocab.txt``, a transformers directory with ``pytorch_model.bin``), and ones
that lead outside the directory through symlinks.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from app_harness import answer_headlines, assert_clean, assert_no_exception, open_page, start_app
from app_toy_assets import ANSWERS, FEATURE_DIM, build_assets, scene_image
from lxmert_helpers import authors_task_state
from streamlit.testing.v1 import AppTest

from app import loading
from app.config import AppConfig
from app.sets import SYNTHETIC_CAPTION, find_sets
from app.state import SYNTHETIC_UPLOAD_NOTICE
from lxmert import LxmertConfig, LxmertForQuestionAnswering
from lxmert.checkpoints import AUTHORS_ANSWERS_FILE, save_pretrained
from lxmert.model_sets import CheckpointEntry, ModelSet, read_model_set, write_model_set
from training.release.default_assets import write_default_set

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DETECTOR = REPO / "assets" / "default" / "detector"  # the synthetic world's, 256-d features


@pytest.fixture(autouse=True)
def fresh_scans():
    """Scans and checks are cached for a minute; each test sees the directories as it has just made them."""
    loading.find_checkpoints.clear()
    loading.problem.clear()
    yield
    loading.find_checkpoints.clear()
    loading.problem.clear()


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    return build_assets(tmp_path_factory.mktemp("assets"))


def tiny_qa(
    visual_feat_dim: int, hidden: int = 16, heads: int = 2, seed: int = 0
) -> LxmertForQuestionAnswering:
    torch.manual_seed(seed)
    config = LxmertConfig(
        vocab_size=30, hidden_size=hidden, num_attention_heads=heads, intermediate_size=32,
        max_position_embeddings=24, l_layers=1, r_layers=1, x_layers=1, visual_feat_dim=visual_feat_dim,
        num_qa_labels=len(ANSWERS),
    )  # fmt: skip
    return LxmertForQuestionAnswering(config).eval()


def copy_vocab(assets: Path, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(assets / "vocab.txt", to))


def write_set(
    root: Path, name: str, world: str, detector: Path, checkpoints: dict[str, CheckpointEntry]
) -> Path:
    write_model_set(ModelSet(root, name, world, detector, checkpoints))
    return root


def mismatched_set(assets: Path, root: Path) -> Path:
    """The shipped synthetic detector (256-d region features) with a model that reads 2048-d ones, and one that
    fits it."""
    shutil.copytree(SHIPPED_DETECTOR, root / "detector", ignore=shutil.ignore_patterns("regions"))
    vocab = assets / "vocab.txt"
    for name, dim in (("wide", 2048), ("fits", 256)):
        save_pretrained(tiny_qa(dim), root / name, answers=ANSWERS)
        shutil.copy(vocab, root / name / "vocab.txt")
    return write_set(
        root,
        "Mismatched",
        "synthetic",
        root / "detector",
        {"wide": CheckpointEntry(root / "wide"), "fits": CheckpointEntry(root / "fits")},
    )


def pick_set(app: AppTest, directory: Path) -> AppTest:
    return app.sidebar.selectbox(key="model_set").set_value(str(directory.resolve())).run()


def test_a_mismatched_checkpoint_is_marked_and_named_with_both_sizes_never_a_tensor_error(
    assets, tmp_path, monkeypatch
):
    checkpoints = tmp_path / "checkpoints"
    mismatched_set(assets, checkpoints / "mismatched")
    app = start_app(assets, monkeypatch, checkpoints=checkpoints)
    assert app.sidebar.selectbox(key="model_set").options == ["Toy set", "Mismatched"]
    pick_set(app, checkpoints / "mismatched")
    assert_no_exception(app)
    picker = app.sidebar.selectbox(key="checkpoint")
    assert picker.options == ["mismatched/wide (cannot run here)", "mismatched/fits"]
    assert (
        picker.value == "mismatched/fits"
    )  # the manifest's default cannot run: the first that can is chosen
    reason = "needs 2048-d region features; this set's detector gives 256-d"
    assert any(reason in c.value for c in app.sidebar.caption)
    assert not app.error, [e.value for e in app.error]
    assert answer_headlines(app)
    picker.set_value("mismatched/wide").run()
    assert_no_exception(app)
    assert [e.value for e in app.error] == [f"Checkpoint `mismatched/wide` cannot be loaded: {reason}"]
    picker.set_value("mismatched/fits").run()
    open_page(app, "compare")
    app.multiselect(key="compare_checkpoints").set_value(["mismatched/fits", "mismatched/wide"]).run()
    assert_no_exception(app)
    assert any("2048-d" in e.value and "256-d" in e.value for e in app.error)


@pytest.fixture(scope="module")
def published(assets, tmp_path_factory) -> Path:
    """A set in the published layouts reading the toy detector's features: the authors' task ``BEST.pth`` (hidden
    768, so that its head count follows from its shapes, as for the real file) with BERT's vocabulary and its
    ``trainval_label2ans.json``, and a transformers directory holding ``pytorch_model.bin``."""
    root = tmp_path_factory.mktemp("published") / "checkpoints" / "real"
    shutil.copytree(
        assets / "default" / "detector", root / "detector", ignore=shutil.ignore_patterns("regions")
    )
    authors = tiny_qa(FEATURE_DIM, hidden=768, heads=12, seed=1)
    (root / "authors").mkdir(parents=True)
    torch.save(authors_task_state(authors.state_dict()), root / "authors" / "BEST.pth")
    (root / "authors" / AUTHORS_ANSWERS_FILE).write_text(json.dumps(list(ANSWERS)))
    copy_vocab(assets, root / "bert" / "vocab.txt")
    hf = tiny_qa(FEATURE_DIM, seed=2)
    (root / "vqa").mkdir()
    torch.save(hf.state_dict(), root / "vqa" / "pytorch_model.bin")
    (root / "vqa" / "config.json").write_text(json.dumps({**hf.config.to_dict(), "model_type": "lxmert"}))
    copy_vocab(assets, root / "vqa" / "vocab.txt")
    (root / "vqa" / AUTHORS_ANSWERS_FILE).write_text(json.dumps(list(ANSWERS)))
    return write_set(
        root,
        "Published layouts",
        "real",
        root / "detector",
        {
            "authors": CheckpointEntry(
                root / "authors" / "BEST.pth",
                vocab=root / "bert" / "vocab.txt",
                answers=root / "authors" / AUTHORS_ANSWERS_FILE,
            ),
            "vqa": CheckpointEntry(root / "vqa"),
        },
    )


@pytest.mark.slow  # the authors' file is 768 wide: some 40 MB to write and load
@pytest.mark.parametrize("checkpoint", ["real/authors", "real/vqa"])
def test_published_layouts_answer_on_their_set(assets, published, checkpoint, monkeypatch):
    app = start_app(assets, monkeypatch, checkpoints=published.parent)
    pick_set(app, published)
    app.sidebar.selectbox(key="checkpoint").set_value(checkpoint).run()
    assert_clean(app)
    answers = answer_headlines(app)
    assert answers and answers[0].removeprefix("### Answer: **").split("**")[0] in ANSWERS
    assert not any(SYNTHETIC_CAPTION in c.value for c in app.sidebar.caption)


def upload(app: AppTest) -> AppTest:
    buffer = io.BytesIO()
    scene_image(9).save(buffer, format="JPEG")
    app.sidebar.radio(key="source").set_value("Upload").run()
    return app.sidebar.file_uploader[0].set_value(("photo.jpg", buffer.getvalue(), "image/jpeg")).run()


def test_the_synthetic_set_says_what_it_knows_and_warns_on_an_upload(assets, tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    app = start_app(assets, monkeypatch, checkpoints=checkpoints)
    assert "model_set" not in [s.key for s in app.sidebar.selectbox]  # one set: no set picker
    assert any(SYNTHETIC_CAPTION in c.value for c in app.sidebar.caption)
    assert not any(SYNTHETIC_UPLOAD_NOTICE == i.value for i in app.sidebar.info)  # a gallery scene
    upload(app)
    assert_no_exception(app)
    assert [i.value for i in app.sidebar.info] == [SYNTHETIC_UPLOAD_NOTICE]


def test_a_set_of_the_real_world_gives_no_synthetic_notice(assets, tmp_path, monkeypatch):
    real = build_assets(tmp_path / "real_assets", world="real")
    app = start_app(real, monkeypatch, checkpoints=tmp_path / "real_assets" / "runs")
    upload(app)
    assert_no_exception(app)
    assert not any(SYNTHETIC_CAPTION in c.value for c in app.sidebar.caption)
    assert SYNTHETIC_UPLOAD_NOTICE not in [i.value for i in app.sidebar.info]


def config_for(assets: Path, checkpoints: Path) -> AppConfig:
    return AppConfig(assets_dir=assets.resolve(), checkpoints_dir=checkpoints.resolve())


def test_loose_checkpoints_join_the_default_set_and_a_transformers_directory_is_listed(assets, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(assets / "runs", checkpoints)
    hf = checkpoints / "hf"
    hf.mkdir()
    torch.save(tiny_qa(FEATURE_DIM).state_dict(), hf / "pytorch_model.bin")
    (hf / "config.json").write_text(json.dumps(tiny_qa(FEATURE_DIM).config.to_dict()))
    copy_vocab(assets, hf / "vocab.txt")
    found = find_sets(config_for(assets, checkpoints))
    assert [s.label for s in found.sets] == ["Toy set"]
    default = found.sets[0].model_set
    assert list(default.checkpoints) == ["default/model", "default/pretrained", "a/best", "b/best", "hf"]
    assert (
        default.default == "default/model" and default.detector == (assets / "default" / "detector").resolve()
    )
    assert found.notes == []


def test_a_set_behind_a_symlink_out_of_the_checkpoints_directory_is_not_followed(
    assets, tmp_path, monkeypatch
):
    elsewhere = mismatched_set(assets, tmp_path / "elsewhere" / "set")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "linked").symlink_to(elsewhere, target_is_directory=True)
    (checkpoints / "manifest_only").mkdir()
    (checkpoints / "manifest_only" / "model_set.json").symlink_to(elsewhere / "model_set.json")
    found = find_sets(config_for(assets, checkpoints))
    assert [s.label for s in found.sets] == ["Toy set"]
    assert all(
        not str(e.path).startswith(str(tmp_path / "elsewhere"))
        for e in found.sets[0].model_set.checkpoints.values()
    )
    assert len(found.notes) == 1
    for name in ("linked", "manifest_only/model_set.json"):
        assert f"`{name}` (leads outside {checkpoints.resolve()}" in found.notes[0], found.notes[0]
    app = start_app(assets, monkeypatch, checkpoints=checkpoints)
    assert_no_exception(app)
    assert "model_set" not in [s.key for s in app.sidebar.selectbox]
    assert [w.value for w in app.sidebar.warning] == found.notes


def test_a_set_whose_files_lead_outside_is_refused_or_its_checkpoint_marked(assets, tmp_path, monkeypatch):
    elsewhere = mismatched_set(assets, tmp_path / "elsewhere" / "set")
    checkpoints = tmp_path / "checkpoints"
    # A manifest naming a directory that is a symlink out of the set: the set is refused, naming the field.
    escaping = checkpoints / "escaping"
    escaping.mkdir(parents=True)
    (escaping / "fits").symlink_to(elsewhere / "fits", target_is_directory=True)
    shutil.copytree(elsewhere / "detector", escaping / "detector")
    manifest = {"format": "lxmert-model-set", "version": 1, "name": "Escaping", "world": "synthetic",
                "detector": "detector", "checkpoints": {"fits": {"path": "fits"}}}  # fmt: skip
    (escaping / "model_set.json").write_text(json.dumps(manifest))  # write_model_set would refuse it
    # A checkpoint directory inside the set whose weights are a symlink out of it: listed, marked, never loaded.
    inside = checkpoints / "inside"
    shutil.copytree(elsewhere, inside, ignore=shutil.ignore_patterns("model_set.json"))
    (inside / "fits" / "model.safetensors").unlink()
    (inside / "fits" / "model.safetensors").symlink_to(elsewhere / "fits" / "model.safetensors")
    write_set(inside, "Inside", "synthetic", inside / "detector", {"fits": CheckpointEntry(inside / "fits")})
    found = find_sets(config_for(assets, checkpoints))
    assert [s.label for s in found.sets] == ["Toy set", "Inside"]
    assert any("Model set `escaping` cannot be used" in n and "checkpoints['fits'].path leads outside" in n
               for n in found.notes)  # fmt: skip
    problem = found.sets[1].problems["inside/fits"]
    assert "model.safetensors" in problem and "leads outside" in problem
    app = start_app(assets, monkeypatch, checkpoints=checkpoints)
    pick_set(app, inside)
    assert_no_exception(app)
    assert app.sidebar.selectbox(key="checkpoint").options == ["inside/fits (cannot run here)"]
    assert any("leads outside" in e.value and "inside/fits" in e.value for e in app.error)


def test_the_shipped_default_set_is_the_one_export_default_writes(tmp_path):
    (tmp_path / "default").mkdir()
    written = write_default_set(tmp_path / "default")
    shipped = REPO / "assets" / "default" / "model_set.json"
    assert json.loads(written.read_text()) == json.loads(shipped.read_text())
    default = read_model_set(shipped.parent)
    assert default.world == "synthetic" and default.detector == SHIPPED_DETECTOR.resolve()
    assert list(default.checkpoints) == ["model", "pretrained"] and default.default == "model"


def test_a_view_looking_for_a_head_loads_no_checkpoint_whose_file_lacks_it(assets, tmp_path, monkeypatch):
    """The ask page looks for a matching head beside the chosen QA checkpoint: checkpoints whose files hold no such
    head are ruled out from their headers, never loaded (at the real sizes, each one is a gigabyte)."""
    root = tmp_path / "checkpoints" / "qa_only"
    shutil.copytree(
        assets / "default" / "detector", root / "detector", ignore=shutil.ignore_patterns("regions")
    )
    for seed, name in enumerate(("one", "two", "three")):
        save_pretrained(tiny_qa(FEATURE_DIM, seed=seed), root / name, answers=ANSWERS)
        copy_vocab(assets, root / name / "vocab.txt")
    write_set(root, "QA only", "synthetic", root / "detector",
              {n: CheckpointEntry(root / n) for n in ("one", "two", "three")})  # fmt: skip
    loaded: list[str] = []
    real_load = loading.load_checkpoint
    monkeypatch.setattr(
        loading, "load_checkpoint", lambda path, **kw: loaded.append(path) or real_load(path, **kw)
    )
    loading.load_model.clear()
    app = start_app(assets, monkeypatch, checkpoints=root.parent)
    loaded.clear()  # the toy default set's
    pick_set(app, root)
    assert_no_exception(app)
    assert any(m.value.startswith("### Answer: ") for m in app.markdown)
    assert loaded == [str((root / "one").resolve())]
    app.switch_page("app_pages/masked_word.py").run()
    assert_no_exception(app)
    assert any("No checkpoint here has" in w.value for w in app.warning)
    assert loaded == [str((root / "one").resolve())]
