"""The caffe network against the transformers LXMERT demo's FRCNN, stage by stage, on five real COCO photos.

The golden outputs in tests/data/butd_parity/ were made by running the demo's own code (outside this repository)
on tests/data/coco/ with the random weights of ``butd_layouts.detectron2_weights(GOLDEN_SEED)``; how is written in
tests/data/butd_parity/README.md. Here the same weights go through the project's weight reader, from each published
layout (py-bottom-up-attention's detectron2 ``.pkl`` and the demo's ``pytorch_model.bin``), and the project's
image loading, on each backend (this project's modules; detectron2's components, where detectron2 is
installed), and each stage must agree: input tensor, res4 map, proposals, pooled features, class
scores, then the chosen boxes, labels, attributes and 2048-d features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from butd_layouts import golden_detector

from lxmert.detection import Detector
from lxmert.detection.images import to_tensor

DATA = Path(__file__).parent / "data"
PHOTOS = sorted((DATA / "coco").glob("*.jpg"))


@pytest.fixture(
    scope="module", params=[("torch", "pkl"), ("torch", "bin"), ("detectron2", "pkl")], ids="-".join
)
def detector(request, tmp_path_factory) -> Detector:
    """The golden weights read from each published layout (py-bottom-up-attention's ``.pkl``, the demo's ``.bin``)
    on this project's modules, and on detectron2's own components where it is installed."""
    backend, layout = request.param
    if backend == "detectron2":
        pytest.importorskip(
            "detectron2", reason="detectron2 is not installed (see lxmert.detection.detectron2_backend)"
        )
    return golden_detector(tmp_path_factory.mktemp("weights"), backend=backend, layout=layout)


def _close(actual: torch.Tensor, expected: np.ndarray, atol: float, what: str) -> None:
    torch.testing.assert_close(
        actual.float(), torch.from_numpy(expected).float(), atol=atol, rtol=1e-5, msg=lambda m: f"{what}: {m}"
    )


def test_there_are_five_photos_and_five_golden_files() -> None:
    assert len(PHOTOS) == 5
    assert sorted(p.stem for p in (DATA / "butd_parity").glob("*.npz")) == [p.stem for p in PHOTOS]


@pytest.mark.slow  # ResNet-101 at 600 px: 5-13 s per photo on a shared 2-core CPU
@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.stem[-6:])
def test_caffe_network_matches_the_reference_stage_by_stage(detector: Detector, photo: Path) -> None:
    golden = dict(np.load(DATA / "butd_parity" / f"{photo.stem}.npz"))
    loaded = detector.load_image(photo)
    image = to_tensor(loaded.image)
    with torch.inference_mode():
        stages = detector.model.stages(image)
        output = detector.model.regions(stages, image.shape[-2:])

    inputs = stages["inputs"][0]
    assert tuple(inputs.shape[-2:]) == tuple(golden["input_shape"]), "resized size"
    _close(inputs[:, ::25, ::25], golden["input_sample"], 1e-3, "preprocessed image (BGR minus means)")
    _close(inputs.mean(dim=(1, 2)), golden["input_channel_mean"], 1e-3, "preprocessed image channel means")

    res4 = stages["features"][0]
    assert tuple(res4.shape) == tuple(golden["res4_shape"]), "res4 map shape"
    _close(res4.mean(dim=(1, 2)), golden["res4_channel_mean"], 1e-4, "res4 channel means")
    _close(res4[::16, ::5, ::5], golden["res4_sample"], 1e-4, "res4 map sample")

    _close(stages["proposals"], golden["proposals"], 1e-3, "RPN proposals (px)")
    _close(stages["proposal_logits"], golden["proposal_logits"], 1e-4, "RPN objectness logits")
    _close(stages["pooled"][:, :32], golden["pooled_head"], 1e-4, "pooled RoI features (first 32 dims)")
    _close(stages["pooled"].sum(dim=1), golden["pooled_sum"], 1e-3, "pooled RoI feature sums")
    foreground = stages["class_probs"][:, :-1]
    assert torch.equal(foreground.argmax(dim=1), torch.from_numpy(golden["class_argmax"])), "class arg-max"
    _close(foreground.max(dim=1).values, golden["class_probs_max"], 1e-5, "best class probability")

    assert torch.equal(output["object_ids"], torch.from_numpy(golden["obj_ids"])), "object labels"
    _close(output["object_conf"], golden["obj_probs"], 1e-5, "object confidences")
    _close(output["boxes"], golden["boxes"], 1e-3, "boxes (original pixels)")
    _close(output["features"], golden["features"], 1e-4, "2048-d region features")
    attr_probs = output["attr_probs"]
    assert torch.equal(attr_probs.argmax(dim=1), torch.from_numpy(golden["attr_ids"])), "attribute labels"
    # The demo drops "no attribute" before its softmax, the Caffe extractor (and this network) after it.
    _close((attr_probs / attr_probs.sum(dim=1, keepdim=True)).max(dim=1).values, golden["attr_probs"], 1e-5,
           "attribute confidence, renormalised over the 400 attributes")  # fmt: skip
    assert int(output["num_real"]) == int((golden["obj_probs"] >= 0.2).sum()), "rows at or above conf 0.2"


def test_the_seed_makes_confident_detections_and_weak_ones() -> None:
    """Random weights rarely detect anything; GOLDEN_SEED's scaled class biases make the comparison meaningful."""
    goldens = [np.load(DATA / "butd_parity" / f"{photo.stem}.npz") for photo in PHOTOS]
    confident = sum(int((g["obj_probs"] >= 0.2).sum()) for g in goldens)
    assert 0 < confident < 36 * len(goldens)
    assert len(set(np.concatenate([g["obj_ids"] for g in goldens]))) >= 2
    assert len(set(np.concatenate([g["attr_ids"] for g in goldens]))) >= 4
