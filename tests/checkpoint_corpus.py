"""A corpus of corrupt checkpoint directories, each built at test time from one valid tiny checkpoint.

Every kind is a copy of the valid directory with one thing broken, the way a careless user, a failed copy or an
attacker would break it: config fields of the wrong type or absurd size, files of the wrong kind or cut short,
weights that are NaN, missing or of the wrong shape, answers that disagree with the QA head, and so on.

A kind's ``fault`` is a regex the error message must match: it names the file at fault and, for a field or a
tensor, that too. ``fault=None`` marks a kind that must load correctly (a harmless oddity).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WORD_EMBEDDINGS = "lxmert.embeddings.word_embeddings.weight"
ANSWER_WEIGHT = "answer_head.logit_fc.3.weight"
FIRST_LAYER_QUERY = "lxmert.encoder.layer.0.attention.self.query.weight"


@dataclass(frozen=True)
class Kind:
    name: str
    break_: Callable[[Path], None]
    fault: str | None  # regex of the error message, None for a correct load
    warning: str | None = None  # regex of the warning a correct load gives


def _edit_config(**changes) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        path = directory / "config.json"
        values = json.loads(path.read_text())
        values.update(changes)
        path.write_text(
            json.dumps(values)
        )  # NaN is written as the JSON extension NaN, as Python's json reads it

    return edit


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        path = directory / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)

    return write


def _make_directory(name: str) -> Callable[[Path], None]:
    def replace(directory: Path) -> None:
        (directory / name).unlink()
        (directory / name / "inner").mkdir(parents=True)

    return replace


def _delete(name: str) -> Callable[[Path], None]:
    return lambda directory: (directory / name).unlink()


def _edit_weights(edit: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def rewrite(directory: Path) -> None:
        path = directory / "model.safetensors"
        state = load_file(path)
        edit(state)
        save_file(state, path, metadata={"format": "pt"})

    return rewrite


def _truncate(fraction: float) -> Callable[[Path], None]:
    def cut(directory: Path) -> None:
        path = directory / "model.safetensors"
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return cut


def _huge_header(directory: Path) -> None:
    # A safetensors file starts with the byte length of its JSON header: claim 2**60 bytes.
    path = directory / "model.safetensors"
    path.write_bytes((1 << 60).to_bytes(8, "little") + path.read_bytes()[8:])


def _answers(values) -> Callable[[Path], None]:
    return _write("answers.json", json.dumps(values))


def _edit_vocab(edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def rewrite(directory: Path) -> None:
        path = directory / "vocab.txt"
        path.write_text("".join(t + "\n" for t in edit(path.read_text().splitlines())))

    return rewrite


def _set(key: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict], None]:
    def edit(state: dict) -> None:
        state[key] = make(state[key]).contiguous()

    return edit


def _drop(key: str) -> Callable[[dict], None]:
    return lambda state: state.pop(key)


def _all_nan(state: dict) -> None:
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.full_like(value, float("nan"))


def _one_inf(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[3] = float("inf")
    return tensor


def _pickle_payload(directory: Path) -> None:
    """Replace the safetensors weights by a pickle that would create ``code-ran`` if it were unpickled."""
    state: dict = load_file(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    state["payload"] = _Payload(directory / CODE_RAN)
    torch.save(state, directory / "pytorch_model.bin")


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


BINARY = bytes(range(256)) * 4  # 0x80..0xff bytes: not UTF-8
CODE_RAN = "code-ran"
# The widest sizes the config allows (layer counts kept): on the tiny checkpoint, 15 billion parameters, 60 GB as
# float32, where the weights file holds some 50 thousand.
SIZE_BOUNDS = dict(
    vocab_size=1 << 18, hidden_size=1 << 13, num_attention_heads=128, intermediate_size=1 << 16,
    visual_feat_dim=1 << 16, num_qa_labels=1 << 17,
)  # fmt: skip

KINDS: tuple[Kind, ...] = (
    # config.json: fields of the wrong type or out of range
    Kind("hidden_size_string", _edit_config(hidden_size="16"), r"config\.json.*'hidden_size'.*integer.*str"),
    Kind("heads_zero", _edit_config(num_attention_heads=0), r"config\.json.*'num_attention_heads'.*\[1, "),
    Kind("heads_bool", _edit_config(num_attention_heads=True), r"config\.json.*'num_attention_heads'.*bool"),
    Kind("layers_null", _edit_config(l_layers=None), r"config\.json.*'l_layers'.*NoneType"),
    Kind("layers_negative", _edit_config(r_layers=-1), r"config\.json.*'r_layers'"),
    Kind("layers_float", _edit_config(x_layers=2.5), r"config\.json.*'x_layers'.*integer"),
    Kind("vocab_billion", _edit_config(vocab_size=10**9), r"config\.json.*'vocab_size'.*\[1, "),
    Kind("intermediate_huge", _edit_config(intermediate_size=10**12), r"config\.json.*'intermediate_size'"),
    Kind(
        "dropout_nan", _edit_config(hidden_dropout_prob=float("nan")), r"config\.json.*'hidden_dropout_prob'"
    ),
    Kind(
        "eps_infinite", _edit_config(layer_norm_eps=float("inf")), r"config\.json.*'layer_norm_eps'.*finite"
    ),
    Kind(
        "dropout_above_one", _edit_config(attention_probs_dropout_prob=3.0), r"'attention_probs_dropout_prob'"
    ),
    Kind("act_unknown", _edit_config(hidden_act="swish"), r"config\.json.*'hidden_act'.*gelu"),
    Kind("flag_string", _edit_config(task_qa="yes"), r"config\.json.*'task_qa'.*true or false"),
    Kind("labels_zero", _edit_config(num_qa_labels=0), r"config\.json.*'num_qa_labels'"),
    Kind("heads_not_divisor", _edit_config(num_attention_heads=3), r"config\.json.*not a multiple"),
    # config.json: disagrees with the weights (in range, but not what the tensors say)
    Kind(
        "config_more_layers",
        _edit_config(l_layers=60),
        r"model\.safetensors: lacks \d+ keys: lxmert\.encoder\.layer\.",
    ),
    Kind(
        "config_at_size_bounds", _edit_config(**SIZE_BOUNDS), r"model\.safetensors: does not fit this config"
    ),
    # config.json: not a config at all
    Kind(
        "config_list", _write("config.json", "[16, 2]"), r"config\.json must hold a JSON object, got a list"
    ),
    Kind("config_binary", _write("config.json", BINARY), r"config\.json is not UTF-8"),
    Kind("config_truncated", _write("config.json", '{"hidden_size": 1'), r"config\.json is not valid JSON"),
    Kind("config_nested_deep", _write("config.json", "[" * 200_000), r"config\.json is not valid JSON"),
    Kind("config_directory", _make_directory("config.json"), r"config\.json"),
    Kind("config_missing", _delete("config.json"), r"cannot infer num_attention_heads"),
    Kind(
        "config_unknown_key", _edit_config(favourite_colour="blue"), None, r"ignores .*\['favourite_colour'\]"
    ),
    Kind("config_transformers_keys", _edit_config(architectures=["LxmertForQuestionAnswering"]), None),
    # model.safetensors
    Kind("weights_truncated", _truncate(0.5), r"model\.safetensors: not a readable safetensors file"),
    Kind("weights_empty", _truncate(0.0), r"model\.safetensors: not a readable safetensors file"),
    Kind("weights_huge_header", _huge_header, r"model\.safetensors: not a readable safetensors file"),
    Kind("weights_directory", _make_directory("model.safetensors"), r"holds neither model\.safetensors"),
    Kind("weights_text", _write("model.safetensors", "not weights\n"), r"model\.safetensors: not a readable"),
    Kind(
        "weights_wrong_shape",
        _edit_weights(_set(FIRST_LAYER_QUERY, lambda t: t[:, :8])),
        r"model\.safetensors: does not fit.*attention\.self\.query\.weight.*\(16, 8\)",
    ),
    Kind(
        "weights_missing_tensor",
        _edit_weights(_drop(FIRST_LAYER_QUERY)),
        r"model\.safetensors: lacks .*attention\.self\.query\.weight",
    ),
    Kind(
        "weights_all_nan",
        _edit_weights(_all_nan),
        r"model\.safetensors: tensor '.*' holds \d+ NaN or infinite",
    ),
    Kind(
        "weights_one_inf",
        _edit_weights(_set(FIRST_LAYER_QUERY, _one_inf)),
        r"model\.safetensors: tensor 'lxmert\.encoder\.layer\.0\.attention\.self\.query\.weight' holds 1 NaN",
    ),
    Kind(
        "weights_integer",
        _edit_weights(_set(FIRST_LAYER_QUERY, lambda t: (t * 100).long())),
        r"model\.safetensors: does not fit.*query\.weight' has dtype torch\.int64",
    ),
    Kind(
        "weights_half",
        _edit_weights(lambda state: state.update({k: v.half() for k, v in state.items()})),
        None,
    ),
    Kind(
        "weights_pickle_payload",
        _pickle_payload,
        r"pytorch_model\.bin: refused: its pickle asks for .*weights_only=True",
    ),
    Kind("weights_extra_tensor", _edit_weights(lambda state: state.update(junk=torch.ones(3))), None),
    # answers.json
    Kind("answers_integers", _answers(list(range(7))), r"answers\.json: answer 0 is a int"),
    Kind(
        "answers_too_few",
        _answers(["red", "green"]),
        r"answers\.json: holds 2 answers but the QA head .* 7 rows",
    ),
    Kind("answers_too_many", _answers([f"a{i}" for i in range(40)]), r"answers\.json: holds 40 answers"),
    Kind("answers_string", _answers("red green blue"), r"answers\.json must hold a JSON list"),
    Kind("answers_duplicate", _answers(["red"] * 7), r"answers\.json: answer 'red' appears twice"),
    Kind(
        "answers_null_item",
        _answers(["red", None, "blue", "yes", "no", "2", "3"]),
        r"answers\.json: answer 1",
    ),
    Kind("answers_binary", _write("answers.json", BINARY), r"answers\.json is not UTF-8"),
    Kind("answers_bad_labels", _answers({"red": 0, "green": "1"}), r"answers\.json: labels must be exactly"),
    Kind("answers_directory", _make_directory("answers.json"), r"answers\.json"),
    # meta.json
    Kind(
        "meta_list", _write("meta.json", '["scores", 1]'), r"meta\.json must hold a JSON object, got a list"
    ),
    Kind("meta_binary", _write("meta.json", BINARY), r"meta\.json is not UTF-8"),
    Kind("meta_truncated", _write("meta.json", '{"scores": {'), r"meta\.json is not valid JSON"),
    Kind("meta_missing", _delete("meta.json"), None),
    # vocab.txt
    Kind("vocab_binary", _write("vocab.txt", BINARY), r"vocab\.txt is not UTF-8"),
    Kind("vocab_empty", _write("vocab.txt", ""), r"vocab\.txt is an empty vocabulary"),
    Kind("vocab_no_specials", _edit_vocab(lambda t: t[5:]), r"vocab\.txt lacks the special tokens"),
    Kind(
        "vocab_longer_than_embeddings",
        _edit_vocab(lambda t: t + [f"extra{i}" for i in range(50)]),
        r"vocab\.txt: has ids up to \d+, beyond the model's vocab_size",
    ),
)


def build_corpus(valid: Path, root: Path) -> dict[str, Path]:
    """One broken copy of the checkpoint directory ``valid`` per kind, under ``root``: name → directory."""
    built = {}
    for kind in KINDS:
        directory = root / kind.name
        shutil.copytree(valid, directory)
        kind.break_(directory)
        built[kind.name] = directory
    return built


__all__ = ["KINDS", "Kind", "build_corpus"]
