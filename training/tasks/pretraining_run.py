"""Pre-train LXMERT on image-sentence pairs with the five tasks of the paper, on the shared trainer.

    python -m training.pretrain --world runs/world --features runs/features/world --preset tiny \\
        --output runs/pretrain --epochs 6 --qa-from-epoch 2 --batch-size 64 --threads 2
    python -m training.pretrain --world runs/world --features runs/features/world \\
        --evaluate assets/default/pretrained   # validation scores of a checkpoint, no training
    torchrun --nproc-per-node 8 -m training.pretrain --train-json data/lxmert/mscoco_train.json,... \\
        --valid-json data/lxmert/mscoco_minival.json --features data/features/coco --vocab bert/vocab.txt \\
        --answers data/lxmert/all_ans.json --objects-vocab '' --init bert-base-uncased/pytorch_model.bin

Defaults are the paper's recipe (base model, batch 256, AdamW lr 1e-4 with 5% warm-up and linear decay, 20 epochs
with QA from epoch 10, masking rates 0.15) and the synthetic world's file layout. Rerunning a command continues an
interrupted run from ``OUTPUT/last.pt`` (``--no-resume`` starts over). ``OUTPUT/final`` and ``OUTPUT/best`` hold
the model with its vocabulary, answer table and ``pretrain_config.json``; ``OUTPUT/summary.json`` compares every
validation metric with the chance level of its head.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lxmert.answers import AnswerTable
from lxmert.bert_init import init_language_from_bert
from lxmert.checkpoints import load_checkpoint
from lxmert.config import LxmertConfig
from lxmert.config_cli import add_dataclass_arguments, command_parser, dataclass_from_args
from lxmert.data.store import FeatureStores
from lxmert.fileio import atomic_write_text
from lxmert.modeling import LxmertForPreTraining
from lxmert.tokenization import VOCAB_FILE, LxmertTokenizer
from lxmert.wordpiece import train_wordpiece
from training.engine import distributed
from training.engine.trainer import SUMMARY_FILE, TrainConfig, Trainer
from training.tasks.pretraining import (
    PretrainConfig,
    PretrainDataset,
    PretrainTask,
    feature_regression_baseline,
    read_pretrain_json,
)

# The trainer's defaults are the paper's pre-training recipe; only these differ for this command.
TRAIN_DEFAULTS = {
    "output": "runs/pretrain",
    # A loss without targets in a batch (QA before qa_from_epoch, an ablated task) leaves its head without
    # gradient, which DDP must be told to expect.
    "find_unused_parameters": True,
}


def parse_args(argv: list[str] | None = None) -> tuple[PretrainConfig, TrainConfig]:
    parser = command_parser("python -m training.pretrain", __doc__)
    add_dataclass_arguments(parser, PretrainConfig, "data and objectives")
    add_dataclass_arguments(parser, TrainConfig, "training", defaults=TRAIN_DEFAULTS)
    args = parser.parse_args(argv)
    return dataclass_from_args(PretrainConfig, args), dataclass_from_args(TrainConfig, args)


def load_tokenizer(config: PretrainConfig, output: Path, train_data: list[dict[str, Any]]) -> LxmertTokenizer:
    """``--vocab``, else the world's ``vocab.txt``, else a WordPiece vocabulary trained on the training sentences.

    A trained vocabulary is written to ``OUTPUT/vocab.txt`` once (by rank 0) and reused on a resume.
    """
    if config.vocab:
        return LxmertTokenizer(config.vocab, max_length=config.max_seq_length)
    world_vocab = Path(config.world, VOCAB_FILE)
    if world_vocab.is_file():
        return LxmertTokenizer(world_vocab, max_length=config.max_seq_length)
    trained = output / VOCAB_FILE
    if distributed.is_main() and not trained.is_file():
        output.mkdir(parents=True, exist_ok=True)
        sentences = (s for datum in train_data for sents in datum["sentf"].values() for s in sents)
        train_wordpiece(sentences, config.vocab_size, trained)
    distributed.barrier()
    return LxmertTokenizer(trained, max_length=config.max_seq_length)


def label_count(path: Path | None, fallback: int) -> int:
    """Lines of a Visual Genome-style label file (one label per line), or ``fallback`` without one."""
    if path is None:
        return fallback
    if not path.is_file():
        raise FileNotFoundError(
            f"no label file at {path}; pass --objects-vocab/--attributes-vocab ('' for none)"
        )
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def model_config(config: PretrainConfig, tokenizer: LxmertTokenizer, answers: AnswerTable, feature_dim: int):
    """The preset, sized to the vocabulary, answer table, features and label files, with the chosen tasks."""
    preset = LxmertConfig.preset(config.preset)
    labels = {
        "num_object_labels": (config.objects_vocab, "objects_vocab.txt", preset.num_object_labels),
        "num_attr_labels": (config.attributes_vocab, "attributes_vocab.txt", preset.num_attr_labels),
    }
    sizes = {}
    for name, (value, world_file, fallback) in labels.items():
        path = Path(value) if value else Path(config.world, world_file)
        # An empty flag with no world file keeps the preset's size (the real 1600 objects / 400 attributes).
        sizes[name] = label_count(path if value or path.is_file() else None, fallback)
    return LxmertConfig.preset(
        config.preset,
        vocab_size=tokenizer.vocab_size,
        visual_feat_dim=feature_dim,
        num_qa_labels=len(answers),
        task_mask_lm=config.task_mask_lm,
        task_matched=config.task_matched,
        task_obj_predict=config.task_obj_predict,
        task_qa=config.task_qa,
        visual_obj_loss="obj" in config.visual_loss_names,
        visual_attr_loss="attr" in config.visual_loss_names,
        visual_feat_loss="feat" in config.visual_loss_names,
        **config.model_overrides(),
        **sizes,
    )


def validation_data(
    config: PretrainConfig,
    features: FeatureStores,
    tokenizer: LxmertTokenizer,
    answers: AnswerTable,
    seed: int,
) -> tuple[PretrainDataset, dict[str, float]]:
    """The validation pairs, and the chance level of each metric on them."""
    # Validation scores QA at every epoch, whatever qa_from_epoch, so that its curve starts at chance.
    valid = PretrainDataset(
        read_pretrain_json(config.valid_paths(), config.max_images),
        features,
        tokenizer,
        answers,
        config,
        seed=seed,
        qa_from_epoch=0,
    )
    return valid, {**valid.majority_baselines(), "feat_loss": feature_regression_baseline(valid)}


def print_validation(valid: dict[str, float], chance: dict[str, float]) -> None:
    for name, level in chance.items():
        if name in valid:
            print(f"valid {name:12s} {valid[name]:.4f}   chance {level:.4f}")


def evaluate_checkpoint(config: PretrainConfig, train_config: TrainConfig) -> dict[str, Any]:
    """``--evaluate``: the validation metrics of a pre-trained checkpoint, beside their chance levels."""
    loaded = load_checkpoint(config.evaluate, LxmertForPreTraining)
    if loaded.tokenizer is None or loaded.answers is None:
        raise ValueError(
            f"{config.evaluate} lacks its vocab.txt or answer table; --evaluate needs a pre-training output "
            "(OUTPUT/best or OUTPUT/final) or an exported model directory"
        )
    features = FeatureStores(config.feature_paths())
    valid, chance = validation_data(config, features, loaded.tokenizer, loaded.answers, train_config.seed)
    trainer = Trainer(loaded.model, PretrainTask(loaded.tokenizer, loaded.answers, config), train_config)
    metrics = trainer.evaluate(valid)
    if distributed.is_main():
        print(f"{config.evaluate}: {len(valid)} validation pairs")
        print_validation(metrics, chance)
    return {"valid": metrics, "chance": chance}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, train_config = parse_args(argv)
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    distributed.init_distributed(train_config.device)
    if config.evaluate:
        return evaluate_checkpoint(config, train_config)
    output = Path(train_config.output)

    train_data = read_pretrain_json(config.train_paths(), config.max_images)
    tokenizer = load_tokenizer(config, output, train_data)
    qa_sets = [s for s in config.qa_sets.split(",") if s] or None
    answers = AnswerTable.from_all_ans(config.answers_path(), dsets=qa_sets)
    features = FeatureStores(config.feature_paths())
    train = PretrainDataset(train_data, features, tokenizer, answers, config, seed=train_config.seed)
    valid, chance = validation_data(config, features, tokenizer, answers, train_config.seed)

    torch.manual_seed(train_config.seed)  # the same initial weights on every process
    model = LxmertForPreTraining(model_config(config, tokenizer, answers, features.feature_dim))
    if config.init:
        report = init_language_from_bert(model, config.init)
        if distributed.is_main():
            print(report)
    if distributed.is_main():
        parameters = sum(p.numel() for p in model.parameters())
        print(
            f"{len(train)} training pairs, {len(valid)} validation pairs, vocab {tokenizer.vocab_size}, "
            f"{len(answers)} answers, {parameters / 1e6:.2f}M parameters"
        )
    trainer = Trainer(model, PretrainTask(tokenizer, answers, config), train_config)
    result = trainer.fit(train, valid)
    summary = {
        "valid": result["valid"],
        "chance": chance,
        "step": result["step"],
        "epoch": result["epoch"],
        "train_seconds": trainer.state.train_time,
    }
    if distributed.is_main():
        atomic_write_text(output / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        print_validation(result["valid"], chance)
    distributed.cleanup()
    return summary
