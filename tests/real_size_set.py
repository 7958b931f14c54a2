"""Random-weight stand-ins of the real LXMERT at its real sizes, in the layouts a researcher downloads, as one set.

One VQA model at the published sizes (9/5/5 layers, hidden 768, 2048-d region features, BERT's 30,522 word pieces,
3,129 answers) is written three ways, all holding the same weights (stored in fp16 to halve what is written):

- ``lxmert-vqa-uncased/``: what transformers' ``LxmertForQuestionAnswering.save_pretrained`` writes
  (``config.json`` and ``model.safetensors``; the model is transformers' own, so the key names are too);
- ``authors/BEST.pth``: the authors' task file (``lxrt_encoder.model.bert.*`` and ``logit_fc.*``), beside the
  set's ``vocab.txt`` and ``trainval_label2ans.json``;
- the hub id ``unc-nlp/lxmert-vqa-uncased``, read from a ``huggingface_hub`` cache laid out as the hub client lays
  one out, holding what the published repository holds: ``config.json`` and transformers 4.x's ``torch.save`` of
  the state dict, ``pytorch_model.bin``.

The detector is the Visual Genome one (ResNet-101 C4, 1600 objects, 400 attributes, 2048-d features) from seeded
random weights in the published detectron2 layout (tests/butd_layouts.py), converted by the command users run, with
image sizes and proposal counts made small so that a CPU runs it in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from butd_layouts import GOLDEN_SEED, detectron2_weights
from lxmert_helpers import authors_task_state, transformers_config

from lxmert.checkpoints import AUTHORS_ANSWERS_FILE
from lxmert.config import LxmertConfig
from lxmert.detection.convert import main as convert
from lxmert.fileio import atomic_write_text, read_json_object
from lxmert.model_sets import CheckpointEntry, ModelSet, write_model_set
from lxmert.tokenization import SPECIAL_TOKENS, VOCAB_FILE

VQA_REPO = "unc-nlp/lxmert-vqa-uncased"
NUM_ANSWERS = 3129
VOCAB_SIZE = 30522
NUM_REGIONS = 10  # the small detector's; dataset mode reads the store's 36
SMALL_DETECTOR = {"min_size": 160, "max_size": 256, "rpn_post_nms_top_n_test": 30, "num_regions": NUM_REGIONS}
# Words of the test questions, so that they are not all [UNK].
WORDS = (
    "what animal is in the car window rusty which toy answer a test item crediting every one flying over field "
    "it sunny color colour of this there how many people are cat dog bird birds sky"
).split()


def detector_dir(work: Path) -> Path:
    """The Visual Genome detector (random weights, published layout) converted into ``work/detector``, made small."""
    pkl = work / "faster_rcnn_from_caffe_attr.pkl"
    pkl.write_bytes(pickle.dumps({"model": detectron2_weights(GOLDEN_SEED)}))
    convert([str(pkl), "--out", str(work / "detector")])
    pkl.unlink()
    config_file = work / "detector" / "config.json"
    atomic_write_text(config_file, json.dumps({**read_json_object(config_file), **SMALL_DETECTOR}))
    return work / "detector"


def answers() -> list[str]:
    """3,129 distinct answers, a few of them words, as many as the authors' VQA table holds."""
    named = ["yes", "no", "2", "cat", "dog", "red", "blue", "birds"]
    return named + [f"answer {i}" for i in range(NUM_ANSWERS - len(named))]


def fill_hub_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str = "0" * 40) -> Path:
    """Lay ``files`` out as ``huggingface_hub`` caches a repo (blobs named by their sha256, a snapshot of relative
    links to them, ``refs/main``), each blob a hard link to the given file; returns the snapshot directory."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir()
    for name, source in files.items():
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        blob = folder / "blobs" / digest.hexdigest()
        os.link(source, blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def build_real_set(root: Path, cache: Path) -> Path:
    """Write the set into ``root`` (``model_set.json`` names ``transformers``, ``authors`` and ``hub``) and the hub
    repo into the hub cache ``cache``; returns ``root``."""
    import transformers

    root.mkdir(parents=True)
    detector = detector_dir(root)
    vocab = root / VOCAB_FILE
    words = [*SPECIAL_TOKENS, *WORDS]
    vocab.write_text(
        "".join(w + "\n" for w in [*words, *(f"word{i}" for i in range(VOCAB_SIZE - len(words)))])
    )
    table = root / AUTHORS_ANSWERS_FILE
    table.write_text(json.dumps(answers()))
    config = LxmertConfig.preset("base", num_qa_labels=NUM_ANSWERS)
    assert (config.l_layers, config.x_layers, config.r_layers, config.hidden_size) == (9, 5, 5, 768)
    assert (config.visual_feat_dim, config.vocab_size) == (2048, VOCAB_SIZE)
    torch.manual_seed(0)
    model = transformers.LxmertForQuestionAnswering(transformers_config(config)).half().eval()
    hf = root / "lxmert-vqa-uncased"
    model.save_pretrained(hf)
    (root / "authors").mkdir()
    torch.save(authors_task_state(model.state_dict()), root / "authors" / "BEST.pth")
    staged = cache / "staged"
    staged.mkdir(parents=True)
    torch.save(model.state_dict(), staged / "pytorch_model.bin")
    del model
    fill_hub_cache(
        cache,
        VQA_REPO,
        {"config.json": hf / "config.json", "pytorch_model.bin": staged / "pytorch_model.bin"},
    )
    shutil.rmtree(staged)
    given = {"vocab": vocab, "answers": table}
    write_model_set(
        ModelSet(
            root,
            "LXMERT stand-ins at the real sizes (random weights)",
            "real",
            detector,
            {
                "transformers": CheckpointEntry(hf, **given),
                "authors": CheckpointEntry(root / "authors" / "BEST.pth", **given),
                "hub": CheckpointEntry(hub=VQA_REPO, **given),
            },
        )
    )
    return root


def build_apart(root: Path, cache: Path) -> Path:
    """:func:`build_real_set` in a child process, so that the memory its 200M-parameter model took goes back to the
    system instead of staying in the caller's allocator."""
    repo = Path(__file__).resolve().parents[1]
    paths = [str(repo), *filter(None, [os.environ.get("PYTHONPATH")])]
    subprocess.run(
        [sys.executable, __file__, str(root), str(cache)],
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
    )
    return root


__all__ = [
    "build_apart",
    "NUM_ANSWERS",
    "NUM_REGIONS",
    "VQA_REPO",
    "answers",
    "build_real_set",
    "detector_dir",
    "fill_hub_cache",
]


if __name__ == "__main__":
    build_real_set(Path(sys.argv[1]), Path(sys.argv[2]))
