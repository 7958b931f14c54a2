"""Time everything the app computes for one image and question (``analysis.session.analyze``).

The target is under one second on this CPU with the embedded default model. With ``--checkpoint`` the benchmark
loads that model (and its tokenizer); with ``--detector`` and ``--image`` it detects the image's regions first
(timed apart: the app detects once per image and caches the regions). Without a checkpoint it builds a randomly
initialised model from ``--preset`` with a small WordPiece vocabulary, which times the same code on the same shapes.
Medians over ``--repeats`` runs after one warm-up are reported per part (wall time), and the median process CPU time of
the whole call, which load from other processes on a shared machine inflates less than wall time (with one thread
it approaches the wall time of an idle machine).

    python -m benchmarks.analysis_speed --checkpoint runs/finetune/vqa --detector assets/detector --image x.png
    python -m benchmarks.analysis_speed --preset tiny --regions 36 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass, field

import torch

from analysis.session import SessionConfig, analyze
from lxmert import LxmertConfig, LxmertForPreTraining
from lxmert.config_cli import add_dataclass_arguments, dataclass_from_args
from lxmert.detection.regions import Regions
from lxmert.tokenization import train_wordpiece

CORPUS = (
    "what colour is the small ball left of the big cube",
    "is there a red cone behind the blue ring",
    "how many green stars are there",
    "what shape is the object right of the yellow disc",
)


@dataclass
class SpeedConfig:
    checkpoint: str = field(
        default="", metadata={"help": "checkpoint directory (default: random --preset model)"}
    )
    preset: str = field(default="tiny", metadata={"help": "LxmertConfig preset of the random model"})
    detector: str = field(default="", metadata={"help": "detector directory, to detect --image"})
    image: str = field(default="", metadata={"help": "image to detect (with --detector)"})
    question: str = field(default=CORPUS[0], metadata={"help": "the question"})
    # As the paper's 36 boxes.
    regions: int = field(default=36, metadata={"help": "random regions when no detector is given"})
    ig_steps: int = field(default=32, metadata={"help": "integration steps of IG"})
    repeats: int = field(default=5, metadata={"help": "timed runs after one warm-up"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = default)"})
    seed: int = field(default=0, metadata={"help": "seed of the random model and regions"})


def parse_args(argv=None) -> SpeedConfig:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.analysis_speed", description=__doc__.split("\n\n")[0]
    )
    add_dataclass_arguments(parser, SpeedConfig)
    return dataclass_from_args(SpeedConfig, parser.parse_args(argv))


def random_regions(num_regions: int, feature_dim: int, seed: int) -> Regions:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_regions, 2, generator=g) * 400
    wh = 20 + torch.rand(num_regions, 2, generator=g) * 200
    return Regions(
        boxes=torch.cat([xy, (xy + wh).clamp(max=640)], dim=1),
        features=torch.randn(num_regions, feature_dim, generator=g).relu(),
        object_ids=torch.randint(10, (num_regions,), generator=g),
        object_conf=torch.rand(num_regions, generator=g),
        attr_probs=torch.rand(num_regions, 10, generator=g).softmax(-1),
        image_height=640,
        image_width=640,
        num_real=num_regions,
    )


def main(argv=None) -> dict[str, float]:
    cfg = parse_args(argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.checkpoint:
        from lxmert.checkpoints import load_checkpoint

        loaded = load_checkpoint(cfg.checkpoint)
        model, tokenizer = loaded.model, loaded.tokenizer
        if tokenizer is None:
            raise ValueError(f"{cfg.checkpoint} has no vocab.txt")
        answer_names = loaded.answers.label2ans if loaded.answers else None
    else:
        tokenizer = train_wordpiece(CORPUS, 200, tempfile.mkdtemp())
        config = LxmertConfig.preset(cfg.preset, vocab_size=tokenizer.vocab_size, num_qa_labels=50)
        model, answer_names = LxmertForPreTraining(config).eval(), None
    detect_seconds = None
    if cfg.detector and cfg.image:
        from lxmert.detection.detector import Detector

        detector = Detector.from_pretrained(cfg.detector)
        start = time.perf_counter()
        regions = detector([cfg.image])[0]
        detect_seconds = time.perf_counter() - start
        object_names, attr_names = detector.objects_vocab, detector.attributes_vocab
    else:
        regions = random_regions(cfg.regions, model.config.visual_feat_dim, cfg.seed)
        object_names = attr_names = None
    session = SessionConfig(ig_steps=cfg.ig_steps)
    runs = []
    for _ in range(cfg.repeats + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = analyze(
            model, tokenizer, regions, cfg.question, answer_names=answer_names, object_names=object_names,
            attr_names=attr_names, config=session,
        )  # fmt: skip
        cpu = time.process_time() - cpu_start
        runs.append({**result.seconds, "total": time.perf_counter() - start, "total_cpu_time": cpu})
    timed = runs[1:]
    medians = {part: statistics.median(run[part] for run in timed) for part in timed[0]}
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {cfg.checkpoint or cfg.preset} ({params / 1e6:.2f}M parameters), {type(model).__name__}, "
        f"{len(regions)} regions, {len(tokenizer.encode(cfg.question))} tokens, "
        f"threads {torch.get_num_threads()}, session {dataclasses.asdict(session)}"
    )
    if detect_seconds is not None:
        print(f"detection (once per image, not in the total): {detect_seconds:.3f} s")
    for part, seconds in medians.items():
        print(f"{part:>22s}  {seconds * 1000:8.1f} ms")
    return medians


if __name__ == "__main__":
    main()
