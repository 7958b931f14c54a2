"""The detector interface: images in, :class:`Regions` out, and a directory format to save and load it.

A saved detector is a directory of four files:

- ``config.json``: the :class:`DetectorConfig`, enough to rebuild the model;
- ``model.safetensors``: the weights (optionally fp16; they are loaded back into fp32);
- ``objects_vocab.txt`` and ``attributes_vocab.txt``: one class name per line, in index order, the layout of
  bottom-up-attention's ``1600-400-20`` vocabulary files.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from lxmert.detection.butd import BUTDInference, CaffeFasterRCNN
from lxmert.detection.config import DetectorConfig
from lxmert.detection.files import (
    ATTRIBUTES_FILE,
    CONFIG_FILE,
    OBJECTS_FILE,
    WEIGHTS_FILE,
    read_detector_config,
    read_vocab,
)
from lxmert.detection.frcnn import FasterRCNNWithAttributes
from lxmert.detection.images import LoadedImage, check_aspect, load_detector_image, to_tensor
from lxmert.detection.regions import Regions
from lxmert.errors import UnreadableFileError
from lxmert.fileio import atomic_write_bytes
from lxmert.precision import autocast, cpu_has_bf16

BACKENDS = ("torch", "detectron2")


class Detector:
    """A Faster R-CNN with attributes plus its vocabularies.

    Args:
        model: the network; it is put in eval mode.
        objects_vocab: class names, ``config.num_classes`` of them, background excluded.
        attributes_vocab: attribute names, ``config.num_attributes`` of them, "no attribute" excluded.
    """

    def __init__(
        self,
        model: FasterRCNNWithAttributes | BUTDInference,
        objects_vocab: list[str],
        attributes_vocab: list[str],
    ) -> None:
        config = model.config
        if len(objects_vocab) != config.num_classes:
            raise ValueError(f"{len(objects_vocab)} object names for num_classes={config.num_classes}")
        if len(attributes_vocab) != config.num_attributes:
            raise ValueError(
                f"{len(attributes_vocab)} attribute names for num_attributes={config.num_attributes}"
            )
        self.model = model.eval()
        self.objects_vocab = list(objects_vocab)
        self.attributes_vocab = list(attributes_vocab)

    @property
    def config(self) -> DetectorConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Detector:
        self.model.to(device)
        return self

    def autocast(self, precision: str) -> AbstractContextManager:
        """The context this detector's network runs in for ``precision`` (``fp32``, ``bf16`` or ``fp16``).

        Reduced precision runs the convolutions and linear layers of the caffe network under autocast; its boxes,
        scores and averaged features are still computed in float32 (``benchmarks.extraction_drift`` measures the
        drift).

        Raises:
            ValueError: reduced precision asked for where its drift was not measured (the torchvision network, the
                detectron2 backend), or where the device has no such arithmetic (fp16 on a CPU, bf16 on a CPU
                without native support, where it would be emulated and slower than fp32).
        """
        refusal = self.precision_refusal(precision)
        if refusal:
            raise ValueError(refusal)
        return autocast(precision, self.device)

    def precision_refusal(self, precision: str) -> str | None:
        """Why :meth:`autocast` refuses ``precision`` for this detector on its device, or None when it runs it."""
        if precision == "fp32":
            return None
        if not isinstance(self.model, CaffeFasterRCNN):
            return f"precision {precision} is for the caffe network on the torch backend only"
        if self.device.type == "cpu" and not (precision == "bf16" and cpu_has_bf16()):
            return f"precision {precision} needs a GPU{' or a CPU with bf16' if precision == 'bf16' else ''}"
        return None

    def load_image(self, source: str | Path | bytes | Image.Image, *, name: str | None = None) -> LoadedImage:
        """Open one image under this detector's limits (:func:`lxmert.detection.images.load_detector_image`)."""
        return load_detector_image(source, self.config, name=name)

    def __call__(
        self, images: Sequence[str | Path | Image.Image], *, precision: str = "fp32"
    ) -> list[Regions]:
        """Load each image (:meth:`load_image`) and detect ``config.num_regions`` regions (:meth:`detect`).

        Raises:
            ImageError: an image cannot be read or is too large; the message names it.
        """
        return self.detect([self.load_image(image) for image in images], precision=precision)

    @torch.inference_mode()
    def detect(self, images: Sequence[LoadedImage], *, precision: str = "fp32") -> list[Regions]:
        """Detect regions in already loaded images; boxes are mapped back to each image's original size.

        ``precision`` ``bf16`` or ``fp16`` runs the network under autocast (:meth:`autocast`); regions come back
        in float32 either way.

        Images of different sizes go through the model in separate calls: a batch is padded to its largest
        image, and the padding would change the features of the smaller ones (the cause of lower scores with
        detectron2's batch mode, airsplay/lxmert#48). So an image's regions never depend on its batch-mates.

        Raises:
            ImageShapeError: an image is so thin that the model's resize would leave it no pixels (images loaded
                by :meth:`load_image` never are).
            ValueError: ``precision`` is refused for this network or device (:meth:`autocast`).
        """
        context = self.autocast(precision)
        for loaded in images:
            check_aspect(loaded.image.size, self.config.max_size, loaded.name)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, loaded in enumerate(images):
            by_size.setdefault(loaded.image.size, []).append(index)
        outputs: dict[int, dict[str, torch.Tensor]] = {}
        for indices in by_size.values():
            with context:
                batch = self.model([to_tensor(images[i].image).to(self.device) for i in indices])
            batch = [{k: v.float() if v.is_floating_point() else v for k, v in out.items()} for out in batch]
            outputs.update(zip(indices, batch, strict=True))
        return [_regions(loaded, outputs[index]) for index, loaded in enumerate(images)]

    def save_pretrained(self, directory: str | Path, *, half: bool = False) -> None:
        """Write the four files of a saved detector; each appears whole or not at all.

        Args:
            directory: created if missing.
            half: store floating-point weights as fp16 (half the size; loaded back as fp32).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            name: (tensor.half() if half and tensor.is_floating_point() else tensor)
            .detach()
            .cpu()
            .contiguous()
            for name, tensor in self.model.state_dict().items()
        }
        atomic_write_bytes(directory / WEIGHTS_FILE, save(state, metadata={"format": "pt"}))
        atomic_write_bytes(directory / CONFIG_FILE, self.config.to_json().encode())
        atomic_write_bytes(directory / OBJECTS_FILE, ("\n".join(self.objects_vocab) + "\n").encode())
        atomic_write_bytes(directory / ATTRIBUTES_FILE, ("\n".join(self.attributes_vocab) + "\n").encode())

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu", backend: str = "torch"
    ) -> Detector:
        """Load a detector saved by :meth:`save_pretrained`, on ``backend`` (:func:`build_network`).

        Raises:
            FileNotFoundError: a file of the format is missing (the message names it).
            ValueError: the config, vocabularies and weights disagree (UnreadableFileError, naming the file,
                when the weights file is unreadable or does not fit the config).
        """
        directory = Path(directory)
        config = read_detector_config(directory)
        model = build_network(config, backend)
        weights = directory / WEIGHTS_FILE
        try:
            state = load_file(weights)
        except (SafetensorError, OSError) as err:
            raise UnreadableFileError(
                weights, f"{weights} is not a readable safetensors file (truncated or corrupt?): {err}"
            ) from err
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise UnreadableFileError(
                weights, f"{weights} does not fit {directory / CONFIG_FILE}: {err}"
            ) from err
        detector = cls(model, read_vocab(directory / OBJECTS_FILE), read_vocab(directory / ATTRIBUTES_FILE))
        return detector.to(device)


def build_network(config: DetectorConfig, backend: str = "torch") -> FasterRCNNWithAttributes | BUTDInference:
    """The network ``config.network`` names, with freshly initialised weights.

    Args:
        backend: "torch" (this project's modules) or, for ``network="caffe"``, "detectron2" (the same model from
            detectron2's components, :mod:`lxmert.detection.detectron2_backend`).

    Raises:
        ValueError: an unknown backend, or detectron2 asked for the torchvision network.
        ImportError: detectron2 asked for but not installed (the message says how to install it).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "detectron2":
        if config.network != "caffe":
            raise ValueError(f"the detectron2 backend runs network='caffe' only, not {config.network!r}")
        try:
            from lxmert.detection.detectron2_backend import Detectron2FasterRCNN
        except ImportError as err:
            raise ImportError(
                f"backend='detectron2' needs detectron2 ({err}); install it the official way: "
                "pip install 'git+https://github.com/facebookresearch/detectron2.git'"
            ) from err
        return Detectron2FasterRCNN(config)
    return CaffeFasterRCNN(config) if config.network == "caffe" else FasterRCNNWithAttributes(config)


def _regions(loaded: LoadedImage, output: dict[str, torch.Tensor]) -> Regions:
    """The model's output for one image as Regions, boxes scaled from the working copy to original pixels."""
    scale_x, scale_y = loaded.scale
    width, height = loaded.original_size
    return Regions(
        boxes=output["boxes"].float().cpu() * torch.tensor([scale_x, scale_y, scale_x, scale_y]),
        features=output["features"].float().cpu(),
        object_ids=output["object_ids"].cpu(),
        object_conf=output["object_conf"].float().cpu(),
        attr_probs=output["attr_probs"].float().cpu(),
        image_height=height,
        image_width=width,
        num_real=int(output["num_real"]),
    )


__all__ = ["BACKENDS", "Detector", "build_network"]
