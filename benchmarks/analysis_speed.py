"""Time everything the app computes for one image and question (``analysis.session.analyze``), in fp32 and bf16.

Targets on a 2-core CPU with the base model (``--preset base``: 9/5/5 layers, hidden 768, 2048-d regions, random
weights, so no checkpoint is needed): answers, every attention map and relevancy under 1 s; integrated gradients at
32 steps under 5 s. With ``--checkpoint`` the benchmark loads that model (and its tokenizer); with ``--detector``
and ``--image`` it detects the image's regions first, in each precision (timed apart: the app detects once per
image and caches the regions). Without a checkpoint it builds a randomly initialised model from ``--preset`` with
a small WordPiece vocabulary, which times the same code on the same shapes.

Each repeat runs the whole analysis once per precision, the order alternating, so load from other processes on a
shared machine hits both alike; medians over ``--repeats`` runs after ``--warmup`` are reported per part (wall
time), with the process CPU time of the whole call, which such load inflates less. bf16 runs where the CPU has
native bf16 (``--precision auto``) or when asked for (``bf16``); ``fp32`` times fp32 alone. The bf16 accuracy at
these sizes follows: top-1 agreement with fp32 over a fixed question set and the largest attention difference.

    python -m benchmarks.analysis_speed --preset base
    python -m benchmarks.analysis_speed --checkpoint runs/finetune/vqa --detector assets/detector --image x.png
    python -m benchmarks.analysis_speed --preset tiny --regions 36 --threads 1
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from analysis.forward import answer_logits, run
from analysis.inputs import example_from_regions
from analysis.session import SessionConfig, analyze
from lxmert import LxmertConfig, LxmertForPreTraining
from lxmert.config_cli import parse_config
from lxmert.detection.regions import Regions
from lxmert.errors import UnreadableFileError, run_cli
from lxmert.precision import PRECISIONS, autocast, resolve_precision
from lxmert.wordpiece import train_wordpiece
from training.engine.distributed import resolve_device

if TYPE_CHECKING:
    from lxmert.detection.detector import Detector  # imported where used: torchvision takes seconds

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
    repeats: int = field(default=5, metadata={"help": "timed runs per precision after the warm-up"})
    warmup: int = field(default=1, metadata={"help": "untimed runs per precision first"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = default)"})
    device: str = field(
        default="auto", metadata={"help": "auto (a GPU when there is one), cpu, cuda, cuda:N"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the random model and regions"})
    precision: str = field(
        default="auto",
        metadata={
            "help": "fp32 alone, or fp32 and bf16 (auto: where the device has native bf16; bf16: always)",
            "choices": PRECISIONS,
        },
    )
    agreement_examples: int = field(
        default=32, metadata={"help": "question/region sets for the bf16 agreement check (0: skip it)"}
    )


def parse_args(argv=None) -> SpeedConfig:
    return parse_config(SpeedConfig, argv, prog="python -m benchmarks.analysis_speed", doc=__doc__)


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


def detector_precisions(detector: Detector, precisions: list[str]) -> list[str]:
    """Those of ``precisions`` the detector runs in: reduced precision is the caffe network's only, so the
    shipped torchvision detector detects in fp32 alone (as the app runs it)."""
    return [precision for precision in precisions if detector.precision_refusal(precision) is None]


def precisions_for(requested: str, device: torch.device) -> list[str]:
    """fp32, then bf16 when ``requested`` resolves to it (``auto`` on a device with native bf16, or ``bf16``)."""
    return ["fp32"] + (
        ["bf16"] if requested != "fp32" and resolve_precision(requested, device) == "bf16" else []
    )


def bf16_agreement(model, tokenizer, cfg: SpeedConfig) -> tuple[float, float, int]:
    """Share of fixed examples (each corpus question on seeded random regions) whose top-1 answer is the same in
    bf16 as in fp32, the largest attention difference between them, and the number of examples."""
    agree, largest, examples = 0, 0.0, []
    for k in range(cfg.agreement_examples):
        regions = random_regions(cfg.regions, model.config.visual_feat_dim, cfg.seed + 1 + k)
        example = example_from_regions(tokenizer, CORPUS[k % len(CORPUS)], regions)
        examples.append(example.to(next(model.parameters()).device))
    with torch.no_grad():
        for example in examples:
            full = run(model, example, output_attentions=True)
            with autocast("bf16", example.input_ids.device):
                half = run(model, example, output_attentions=True)
            agree += int(answer_logits(full)[0].argmax() == answer_logits(half)[0].argmax())
            for family, layers in full.attentions.items():
                for a, b in zip(layers, getattr(half.attentions, family), strict=True):
                    largest = max(largest, float((a - b.float()).abs().max()))
    return agree / len(examples), largest, len(examples)


def main(argv=None) -> dict[str, dict[str, float]]:
    cfg = parse_args(argv)
    if bool(cfg.detector) != bool(cfg.image):
        raise SystemExit(
            "error: --detector and --image go together (the image is detected with the detector)"
        )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.checkpoint:
        from lxmert.checkpoints import load_checkpoint

        loaded = load_checkpoint(cfg.checkpoint)
        model, tokenizer = loaded.model, loaded.tokenizer
        if tokenizer is None:
            raise UnreadableFileError(cfg.checkpoint, "has no vocab.txt")
        answer_names = loaded.answers.label2ans if loaded.answers else None
    else:
        tokenizer = train_wordpiece(CORPUS, 200, tempfile.mkdtemp())
        config = LxmertConfig.preset(cfg.preset, vocab_size=tokenizer.vocab_size, num_qa_labels=50)
        model, answer_names = LxmertForPreTraining(config).eval(), None
    device = resolve_device(cfg.device)
    model = model.to(device)
    precisions = precisions_for(cfg.precision, device)
    detect_seconds: dict[str, float] = {}
    if cfg.detector and cfg.image:
        from lxmert.detection.detector import Detector

        detector = Detector.from_pretrained(cfg.detector)
        detect_in = detector_precisions(detector, precisions)
        times: dict[str, list[float]] = {p: [] for p in detect_in}
        for repeat in range(cfg.repeats + cfg.warmup):
            for precision in detect_in if repeat % 2 == 0 else detect_in[::-1]:
                start = time.perf_counter()
                detected = detector([cfg.image], precision=precision)[0]
                if repeat >= cfg.warmup:
                    times[precision].append(time.perf_counter() - start)
                if precision == "fp32":
                    regions = detected  # the analysis reads the fp32 detection, as the app does
        detect_seconds = {p: statistics.median(t) for p, t in times.items()}
        object_names, attr_names = detector.objects_vocab, detector.attributes_vocab
    else:
        regions = random_regions(cfg.regions, model.config.visual_feat_dim, cfg.seed)
        object_names = attr_names = None
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in precisions}
    for repeat in range(cfg.repeats + cfg.warmup):
        for precision in precisions if repeat % 2 == 0 else precisions[::-1]:
            session = SessionConfig(ig_steps=cfg.ig_steps, precision=precision)
            start, cpu_start = time.perf_counter(), time.process_time()
            result = analyze(
                model,
                tokenizer,
                regions,
                cfg.question,
                answer_names=answer_names,
                object_names=object_names,
                attr_names=attr_names,
                config=session,
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            cpu = time.process_time() - cpu_start
            if repeat >= cfg.warmup:
                runs[precision].append(
                    {**result.seconds, "total": time.perf_counter() - start, "total_cpu_time": cpu}
                )
    medians = {
        precision: {part: statistics.median(run[part] for run in timed) for part in timed[0]}
        for precision, timed in runs.items()
    }
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {cfg.checkpoint or cfg.preset} ({params / 1e6:.2f}M parameters), {type(model).__name__}, "
        f"{len(regions)} regions, {len(tokenizer.encode(cfg.question))} tokens, threads {torch.get_num_threads()}, "
        f"{device}, IG steps {cfg.ig_steps}, median of {cfg.repeats} after {cfg.warmup} warm-up, precisions alternated"
    )
    for precision, seconds in detect_seconds.items():
        print(f"detection {precision} (once per image, not in the total): {seconds:.3f} s")
    header = f"{'part':>28s}" + "".join(f"{p + ' ms':>12s}" for p in precisions)
    print(header + (f"{'fp32 / bf16':>13s}" if len(precisions) == 2 else ""))
    for part in medians["fp32"]:
        line = f"{part:>28s}" + "".join(f"{medians[p][part] * 1000:12.1f}" for p in precisions)
        if len(precisions) == 2:
            line += f"{medians['fp32'][part] / medians['bf16'][part]:12.2f}x"
        print(line)
    if "bf16" in precisions and cfg.agreement_examples:
        agreement, largest, count = bf16_agreement(model, tokenizer, cfg)
        print(
            f"bf16 vs fp32: top-1 answers agree on {agreement:.1%} of {count} examples; "
            f"largest attention difference {largest:.4f}"
        )
    return medians


if __name__ == "__main__":
    run_cli(main)  # a refused or unreadable file: one line, no traceback
