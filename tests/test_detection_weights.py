"""Reading the published BUTD weights: safe pickles, both layouts placed tensor by tensor, the converter CLI."""

from __future__ import annotations

import os
import pathlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from butd_layouts import demo_state_dict, detectron2_weights, write_layout
from safetensors.torch import save_file

from lxmert.detection import Detector, DetectorConfig
from lxmert.detection.butd import CaffeFasterRCNN
from lxmert.detection.convert import main as convert_main
from lxmert.detection.weights import (
    UnsafePickleError,
    config_for,
    load_butd_weights,
    read_tensors,
    to_detectron2_names,
)


class TouchOnLoad:
    """A pickle payload: unpickling calls pathlib.Path.touch on the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class SystemOnLoad:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def d2() -> dict[str, np.ndarray]:
    return detectron2_weights(seed=3)


@pytest.mark.parametrize("payload", [TouchOnLoad, SystemOnLoad])
def test_a_pickle_with_a_code_payload_is_refused_and_never_runs(tmp_path: Path, payload) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    weights = {"backbone.stem.conv1.weight": np.zeros((2, 3), np.float32), "trap": payload(marker)}
    path.write_bytes(pickle.dumps({"model": weights}))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*refused to load the global (pathlib|posix)"):
        read_tensors(path)
    assert not marker.exists(), "the payload ran"


def test_plain_pickles_of_numpy_arrays_load_in_both_protocols(tmp_path: Path) -> None:
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(
            pickle.dumps({"model": arrays, "__author__": "x", "matching_heuristics": True}, protocol)
        )
        tensors = read_tensors(path)
        assert sorted(tensors) == ["a", "b"]
        assert torch.equal(tensors["a"], torch.arange(6.0).view(2, 3)) and tensors["b"].dtype == torch.int64


def test_a_pickle_holding_something_else_than_arrays_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps({"model": {"x": "a string"}}))
    with pytest.raises(ValueError, match=r"odd\.pkl: 'x' is a str"):
        read_tensors(path)


def test_both_layouts_give_the_same_tensors_and_fill_the_network_exactly(tmp_path: Path, d2) -> None:
    pkl, binary = write_layout(tmp_path, "pkl", d2), write_layout(tmp_path, "bin", d2)

    from_pkl, from_bin = read_tensors(pkl), read_tensors(binary)
    counters = {k.replace("running_var", "num_batches_tracked") for k in d2 if k.endswith("running_var")}
    extras = counters | {"proposal_generator.anchor_generator.cell_anchors.0"}
    assert set(from_bin) - set(from_pkl) == extras and set(from_pkl) <= set(from_bin)
    config = config_for(from_pkl)
    assert (config.num_classes, config.num_attributes) == (1600, 400)
    mapped_pkl, mapped_bin = to_detectron2_names(from_pkl, config), to_detectron2_names(from_bin, config)
    assert mapped_pkl.keys() == mapped_bin.keys() == d2.keys()
    assert all(torch.equal(mapped_pkl[k], mapped_bin[k]) for k in d2)

    # Every tensor of the independent key list is placed in the network, and the network wants no other.
    model = CaffeFasterRCNN(config)
    assert set(model.state_dict()) == set(d2)
    load_butd_weights(model, from_bin, str(binary))
    state = model.state_dict()
    assert all(torch.equal(state[k], torch.from_numpy(d2[k])) for k in d2)


def test_missing_extra_or_misshapen_tensors_and_wrong_anchors_are_named(d2) -> None:
    config = DetectorConfig()
    model = CaffeFasterRCNN(config)
    tensors = {k: torch.from_numpy(v) for k, v in d2.items()}
    missing = {k: v for k, v in tensors.items() if k != "roi_heads.res5.2.conv3.weight"}
    with pytest.raises(ValueError, match=r"src.*missing \['roi_heads.res5.2.conv3.weight'\]"):
        load_butd_weights(model, missing, "src")
    with pytest.raises(ValueError, match=r"unexpected \['pixel_mean'\]"):
        load_butd_weights(model, {**tensors, "pixel_mean": torch.zeros(3)}, "src")
    short = {**tensors, "roi_heads.box_predictor.attr_score.bias": torch.zeros(5)}
    with pytest.raises(ValueError, match=r"misshapen \['roi_heads.box_predictor.attr_score.bias \(5,\)"):
        load_butd_weights(model, short, "src")
    anchors = {**tensors, "proposal_generator.anchor_generator.cell_anchors.0": torch.zeros(12, 4)}
    with pytest.raises(ValueError, match="anchor_sizes"):
        load_butd_weights(model, anchors, "src")
    no_attributes = {k: v for k, v in tensors.items() if "attr" not in k and "cls_embedding" not in k}
    with pytest.raises(ValueError, match="no attribute head"):
        config_for(no_attributes)


@pytest.mark.slow  # writes two 260 MB detector directories
def test_convert_cli_writes_a_detector_directory_from_each_layout(tmp_path: Path, d2, capsys) -> None:
    pkl, binary = write_layout(tmp_path, "pkl", d2), write_layout(tmp_path, "bin", d2)
    convert_main([str(pkl), "--out", str(tmp_path / "from_pkl")])
    convert_main(
        [str(binary), "--out", str(tmp_path / "from_bin"), "--num-regions", "100", "--min-regions", "10"]
    )
    assert "1600 objects, 400 attributes, 10-100 regions" in capsys.readouterr().out

    a = Detector.from_pretrained(tmp_path / "from_pkl")
    b = Detector.from_pretrained(tmp_path / "from_bin")
    assert a.config.network == "caffe" and a.config.num_regions == 36 and b.config.fewest_regions == 10
    assert (a.objects_vocab[:2], a.attributes_vocab[:2]) == (["yolk", "goal"], ["gray", "multi colored"])
    assert len(a.objects_vocab) == 1600 and len(a.attributes_vocab) == 400
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert all(
        torch.equal(state_a[k], state_b[k]) and torch.equal(state_a[k], torch.from_numpy(d2[k])) for k in d2
    )


def test_a_torch_file_with_a_code_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "pytorch_model.bin"
    torch.save({"backbone.stem.conv1.weight": torch.zeros(2), "trap": TouchOnLoad(marker)}, path)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: refused: its pickle asks for"):
        read_tensors(path)
    assert not marker.exists(), "the payload ran"


def test_safetensors_of_the_demo_layout_read_like_the_others(tmp_path: Path, d2) -> None:
    path = tmp_path / "frcnn.safetensors"
    save_file({k: v.contiguous() for k, v in demo_state_dict(d2).items()}, path)
    mapped = to_detectron2_names(read_tensors(path), DetectorConfig())
    assert mapped.keys() == d2.keys() and all(torch.equal(mapped[k], torch.from_numpy(d2[k])) for k in d2)
