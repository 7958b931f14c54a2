"""``python -m lxmert.detection.convert``: the published BUTD Visual Genome weights as a saved detector directory.

    python -m lxmert.detection.convert faster_rcnn_from_caffe_attr.pkl --out runs/vg-detector
    python -m lxmert.detection.convert frcnn-vg-finetuned/pytorch_model.bin --out runs/vg-detector
    python -m lxmert.detection.convert faster_rcnn_from_caffe_attr_original.pkl --out runs/vg-original \\
        --num-regions 100 --min-regions 10

SRC is py-bottom-up-attention's detectron2 ``.pkl``, the transformers demo's ``pytorch_model.bin``, or a
``.safetensors`` of either (:mod:`lxmert.detection.weights`). The directory written holds ``model.safetensors``,
``config.json`` (``network="caffe"``) and the Visual Genome vocabularies shipped in ``assets/vg/``: what the app,
``training.extract`` and ``training.byo`` take as ``--detector``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxmert.config_cli import parse_config
from lxmert.detection.butd import CaffeFasterRCNN
from lxmert.detection.config import REGION_SELECTIONS
from lxmert.detection.detector import Detector
from lxmert.detection.files import ATTRIBUTES_FILE, OBJECTS_FILE, VG_VOCAB_DIR, read_vocab
from lxmert.detection.weights import config_for, load_butd_weights, read_tensors
from lxmert.errors import run_cli


def convert(
    source: str | Path,
    out: str | Path,
    *,
    vocab_dir: str | Path = VG_VOCAB_DIR,
    num_regions: int = 36,
    min_regions: int = 0,
    region_selection: str = "per_class",
) -> Detector:
    """Read ``source``, check that every tensor fits the network, and save the detector to ``out``.

    Raises:
        ValueError: the weights or vocabularies do not fit the network (the message names the file and tensors).
        pickle-refusing :class:`~lxmert.detection.weights.UnsafePickleError`: the pickle asks for code.
    """
    tensors = read_tensors(source)
    config = config_for(
        tensors, num_regions=num_regions, min_regions=min_regions, region_selection=region_selection
    )
    model = CaffeFasterRCNN(config)
    load_butd_weights(model, tensors, str(source))
    vocab_dir = Path(vocab_dir)
    detector = Detector(model, read_vocab(vocab_dir / OBJECTS_FILE), read_vocab(vocab_dir / ATTRIBUTES_FILE))
    detector.save_pretrained(out)
    return detector


@dataclass
class ConvertConfig:
    source: str = field(
        metadata={
            "help": "detectron2 .pkl, transformers pytorch_model.bin, or .safetensors",
            "positional": True,
        }
    )
    out: str = field(metadata={"help": "detector directory to write"})
    vocab_dir: str = field(
        default=str(VG_VOCAB_DIR), metadata={"help": "folder with the two VG vocabulary files"}
    )
    num_regions: int = field(default=36, metadata={"help": "most regions per image (36 for LXMERT)"})
    min_regions: int = field(default=0, metadata={"help": "fewest regions per image (0: num-regions)"})
    region_selection: str = field(
        default="per_class",
        metadata={"help": "DetectorConfig.region_selection", "choices": REGION_SELECTIONS},
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_config(
        ConvertConfig, argv, prog="python -m lxmert.detection.convert", doc=__doc__, title="conversion"
    )
    detector = convert(
        args.source,
        args.out,
        vocab_dir=args.vocab_dir,
        num_regions=args.num_regions,
        min_regions=args.min_regions,
        region_selection=args.region_selection,
    )
    config = detector.config
    print(
        f"wrote {args.out}: {config.num_classes} objects, {config.num_attributes} attributes, "
        f"{config.fewest_regions}-{config.num_regions} regions per image"
    )


if __name__ == "__main__":
    run_cli(main)
