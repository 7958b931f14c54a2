"""Reading the published BUTD Visual Genome weights in each of their layouts, without running code from a file.

Two layouts exist, and this module turns either into the state dict of ``DetectorConfig(network="caffe")``
(:mod:`lxmert.detection.butd`, whose module names are detectron2's):

- py-bottom-up-attention's detectron2 checkpoints (``faster_rcnn_from_caffe_attr.pkl``, ``..._original.pkl``):
  a pickle of ``{"model": {name: numpy array}, ...}``. A pickle can name any Python callable and have it called
  while loading, so :class:`NumpyUnpickler` admits only what numpy arrays are rebuilt from and refuses anything
  else before it runs.
- the transformers LXMERT demo's ``pytorch_model.bin`` (``unc-nlp/frcnn-vg-finetuned``): the same names plus a
  ``num_batches_tracked`` per batch norm and the RPN's ``cell_anchors.0``; read by
  :func:`lxmert.checkpoints.read_torch_file` (``weights_only=True``). The anchors are checked against the config's, then dropped, as are the batch counters.

A ``.safetensors`` file of either naming is read as well. The layout is recognised by the keys, not the file name.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from lxmert.checkpoints import read_torch_file
from lxmert.detection.butd import cell_anchors
from lxmert.detection.config import DetectorConfig
from lxmert.errors import UnreadableFileError

DEMO_ANCHORS_KEY = "proposal_generator.anchor_generator.cell_anchors.0"
_BATCH_COUNTER = "num_batches_tracked"
_ZIP_MAGIC = b"PK\x03\x04"


class UnsafePickleError(UnreadableFileError):
    """A pickle asked for a global that weights never need; nothing it asked for was called."""


class NumpyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, strings, numbers and numpy arrays, and refuses every other global.

    Plain containers and scalars are pickle opcodes and need no global; numpy arrays need the globals below
    (``_codecs.encode`` turns a string into bytes: protocol 2 stores an array's buffer that way).
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),  # protocol 5 (numpy >= 1.16)
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("collections", "OrderedDict"),
            ("_codecs", "encode"),
        }
    )

    def __init__(self, file: Any, name: str) -> None:
        super().__init__(file, encoding="latin1")  # detectron2's Caffe conversions were pickled by Python 2
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise UnsafePickleError(
                self.name,
                f"refused to load the global {module}.{name}; a weights pickle holds only dicts of "
                "numpy arrays, and this one asks to build or call something else",
            )
        return super().find_class(module, name)


def read_pickle(path: str | Path) -> Any:
    """The object in a pickle of plain containers and numpy arrays (raises UnsafePickleError otherwise)."""
    with open(path, "rb") as file:
        try:
            return NumpyUnpickler(file, str(path)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as err:
            raise UnreadableFileError(
                path, f"not a readable weights pickle ({type(err).__name__}: {err})"
            ) from err


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor in a weights file, by name: detectron2 ``.pkl``, torch ``.bin``/``.pth``/``.pt``, safetensors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is none of these, or holds something other than named arrays (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    with open(path, "rb") as file:
        head = file.read(8)
    if path.suffix == ".safetensors":
        return load_file(path)
    if head.startswith(_ZIP_MAGIC) or path.suffix in {".bin", ".pth", ".pt"}:
        loaded = read_torch_file(path)
    else:
        loaded = read_pickle(path)
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]  # detectron2's checkpoint: {"model": ..., "__author__": ..., ...}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a dict of named arrays, got {type(loaded).__name__}")
    tensors = {}
    for name, value in loaded.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: {name!r} is a {type(value).__name__}, not an array")
        tensors[str(name)] = value
    return tensors


def config_for(tensors: dict[str, torch.Tensor], **overrides: Any) -> DetectorConfig:
    """The ``network="caffe"`` config whose vocabulary sizes fit these weights (attribute head required)."""
    try:
        num_classes = tensors["roi_heads.box_predictor.cls_score.weight"].shape[0] - 1
    except KeyError:
        raise ValueError(
            "not a BUTD Faster R-CNN: roi_heads.box_predictor.cls_score.weight is missing"
        ) from None
    if "roi_heads.box_predictor.attr_score.weight" not in tensors:
        raise ValueError(
            "these weights have no attribute head (faster_rcnn_from_caffe.pkl?); LXMERT's features come from "
            "the attribute model, faster_rcnn_from_caffe_attr.pkl"
        )
    num_attributes = tensors["roi_heads.box_predictor.attr_score.weight"].shape[0] - 1
    return DetectorConfig(num_classes=num_classes, num_attributes=num_attributes, **overrides)


def to_detectron2_names(tensors: dict[str, torch.Tensor], config: DetectorConfig) -> dict[str, torch.Tensor]:
    """Either layout's tensors under detectron2's names (the caffe network's), the demo's extras checked and dropped.

    Raises:
        ValueError: the demo's anchors are not the config's (its anchor sizes or ratios differ).
    """
    state = {}
    for name, tensor in tensors.items():
        if name.endswith(_BATCH_COUNTER):
            continue  # the demo's BatchNorm2d counters; frozen batch norm has none
        if name == DEMO_ANCHORS_KEY:
            expected = cell_anchors(tuple(config.anchor_sizes), tuple(config.anchor_ratios))
            if tensor.shape != expected.shape or not torch.allclose(tensor.float(), expected, atol=1e-3):
                raise ValueError(
                    f"{name} holds anchors {tensor.tolist()}, not those of anchor_sizes {config.anchor_sizes} "
                    f"and anchor_ratios {config.anchor_ratios}"
                )
            continue
        state[name] = tensor.float()
    return state


def load_butd_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Put every tensor into ``model`` (strict): none missing, none left over, shapes equal.

    Raises:
        ValueError: naming the missing, unexpected or misshapen tensors and ``source``.
    """
    state = to_detectron2_names(tensors, model.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [
        f"{name} {tuple(state[name].shape)} (needs {tuple(expected[name].shape)})"
        for name in sorted(set(state) & set(expected))
        if state[name].shape != expected[name].shape
    ]
    if missing or unexpected or misshapen:
        raise ValueError(
            f"{source} does not fit the BUTD network: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, misshapen {misshapen[:5]}"
        )
    model.load_state_dict(state, strict=True)


__all__ = [
    "NumpyUnpickler",
    "UnsafePickleError",
    "config_for",
    "load_butd_weights",
    "read_pickle",
    "read_tensors",
    "to_detectron2_names",
]
