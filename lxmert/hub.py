"""``python -m lxmert.hub download``: LXMERT's published weights, the Visual Genome detector and the authors' answer
tables, written as a ready model set (:mod:`lxmert.model_sets`).

    python -m lxmert.hub download --to models/real                 # everything
    python -m lxmert.hub download vqa detector --to models/real    # some of it

=========  ==========================================  =============================================================
WHAT       fetched                                     written into DIR
=========  ==========================================  =============================================================
base       ``unc-nlp/lxmert-base-uncased``             ``lxmert-base-uncased/``
vqa        ``unc-nlp/lxmert-vqa-uncased``, VQA table   ``lxmert-vqa-uncased/`` with ``trainval_label2ans.json``
gqa        ``unc-nlp/lxmert-gqa-uncased``, GQA table   ``lxmert-gqa-uncased/`` with ``trainval_label2ans.json``
detector   ``unc-nlp/frcnn-vg-finetuned``              ``frcnn-vg-finetuned/``: converted by :mod:`lxmert.detection.convert`
=========  ==========================================  =============================================================

A checkpoint directory holds its repo's ``config.json`` and ``pytorch_model.bin``, and the ``vocab.txt`` of
``lxmert-base-uncased``: the BERT uncased WordPiece vocabulary all three were trained with, the one the transformers
demo tokenizes with for each of them. Once DIR holds a detector and a checkpoint, ``model_set.json`` names every
complete one (world ``real``; the VQA and GQA checkpoints with their answer tables), so a later run that adds an
item completes the set.

Hub files come through ``huggingface_hub``: its cache (``HF_HOME``/``HF_HUB_CACHE``, or ``--cache-dir``) resumes an
interrupted download and answers a repeated one from disk, and ``HF_HUB_OFFLINE=1`` makes it read the cache alone.
Each file is then hard-linked into DIR (copied where the cache is on another file system). The answer tables come
over plain HTTPS from the authors' repository (``--tables-url``) and are kept only as a JSON list of distinct
strings, one per row of the checkpoint's QA head. Every file appears whole or not at all, and a re-run skips what
is complete. Nothing is unpickled here but the detector's weights, with ``weights_only=True``
(:func:`lxmert.checkpoints.read_torch_file`); the LXMERT weights are read the same way when a checkpoint loads.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

from lxmert.answers import AnswerTable
from lxmert.checkpoints import AUTHORS_ANSWERS_FILE, CONFIG_FILE, TORCH_WEIGHTS_FILE, read_config
from lxmert.config_cli import add_dataclass_arguments, command_parser, dataclass_from_args
from lxmert.detection.convert import VG_VOCAB_DIR, convert
from lxmert.detection.files import check_saved_detector
from lxmert.errors import UnreadableFileError, run_cli
from lxmert.fileio import (
    atomic_directory,
    atomic_link_or_copy,
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    read_json_record,
    remove_stale_temp_files,
)
from lxmert.hub_cache import DETECTOR_REPO, LXMERT_REPOS, PUBLISHED, repo_cache_folder
from lxmert.model_sets import CheckpointEntry, ModelSet, write_model_set
from lxmert.tokenization import VOCAB_FILE

TABLES_URL = "https://raw.githubusercontent.com/airsplay/lxmert/master/data"

TABLE_TASKS = (
    "vqa",
    "gqa",
)  # the checkpoints with an answer table: {TABLES_URL}/{task}/{AUTHORS_ANSWERS_FILE}
VOCAB_REPO = LXMERT_REPOS["base"]
DETECTOR_SOURCE_FILE = "source.json"  # in the detector directory: the repo and revision it was converted from
MAX_TABLE_BYTES = 16 << 20  # far above any answer table: a larger body is not one
SET_NAME = "LXMERT (transformers' published weights)"
Log = Callable[[str], None]


class DownloadError(UnreadableFileError):
    """What could not be fetched or was refused; ``path`` is where it belongs (a cache folder or a file in DIR)."""


@dataclass
class DownloadConfig:
    to: str = field(metadata={"help": "the model set's directory (created if missing)"})
    what: tuple[str, ...] = field(
        default=tuple(PUBLISHED),
        metadata={
            "help": "what to fetch, of " + ", ".join(PUBLISHED),
            "positional": True,
            "choices": tuple(PUBLISHED),
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "huggingface_hub's cache (default: its HF_HUB_CACHE, or HF_HOME/hub)"}
    )
    tables_url: str = field(
        default=TABLES_URL,
        metadata={"help": f"where the answer tables are: <tables-url>/<vqa|gqa>/{AUTHORS_ANSWERS_FILE}"},
    )
    vocab_dir: str = field(
        default=str(VG_VOCAB_DIR), metadata={"help": "the detector's Visual Genome vocabulary files"}
    )
    timeout: float = field(default=60.0, metadata={"help": "seconds to wait for the tables' server"})


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def hub_file(repo_id: str, filename: str, cache_dir: str | None, item: str) -> Path:
    """``repo_id``'s ``filename`` (its ``main`` revision) in the hub cache, downloaded there if it is not yet.

    Raises:
        DownloadError: naming the repo's cache folder, when the file is neither cached nor fetchable (offline,
            no network, no such repo or file); the message says where to put it.
    """
    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir))
    except LocalEntryNotFoundError as err:
        why = (
            "HF_HUB_OFFLINE is set"
            if constants.HF_HUB_OFFLINE
            else f"the hub cannot be reached ({_one_line(err.__cause__ or err)})"
        )
        raise DownloadError(
            repo_cache_folder(repo_id, cache_dir),
            f"{repo_id}'s {filename} is not in the Hugging Face cache, and {why}. On a machine with internet run "
            f"`python -m lxmert.hub download {item} --to DIR` and copy DIR here, or copy that machine's cache "
            "folder of the repo here",
        ) from err
    except (EntryNotFoundError, HfHubHTTPError) as err:
        raise DownloadError(
            repo_cache_folder(repo_id, cache_dir), f"the hub refused {repo_id}'s {filename}: {_one_line(err)}"
        ) from err


def place(cached: Path, target: Path, log: Log) -> None:
    """Put the cached file at ``target`` (a hard link, else a copy), unless ``target`` already holds its bytes."""
    if target.is_file() and (os.path.samefile(cached, target) or filecmp.cmp(cached, target, shallow=False)):
        log(f"kept {target}")
        return
    atomic_link_or_copy(cached.resolve(), target)
    log(f"wrote {target}")


def checked_table(values: Any, rows: int, where: str) -> AnswerTable:
    """``values`` as an answer table with one answer per QA-head row.

    Raises:
        ValueError: naming ``where``, when ``values`` is not a list of distinct strings, or not ``rows`` long.
    """
    if not isinstance(values, list):
        raise ValueError(f"{where} must be a JSON list of answers, got a {type(values).__name__}")
    try:
        table = AnswerTable(values)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    if len(table) != rows:
        raise ValueError(f"{where} holds {len(table)} answers, but the checkpoint's QA head has {rows} rows")
    return table


def fetch_bytes(url: str, target: Path, timeout: float) -> bytes:
    """The body of a GET of ``url`` (http or https), at most :data:`MAX_TABLE_BYTES`.

    Raises:
        DownloadError: naming ``target``, when the server cannot be reached, answers with an error, or sends too
            much; the message says where to put the file by hand.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(target, f"{url} is not an http(s) URL (--tables-url)")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(MAX_TABLE_BYTES + 1)
    except urllib.error.HTTPError as err:
        reason = f"the server answered {err.code} {err.reason}"
    except (urllib.error.URLError, OSError) as err:
        reason = f"it cannot be reached ({_one_line(getattr(err, 'reason', err))})"
    else:
        if len(data) > MAX_TABLE_BYTES:
            raise DownloadError(target, f"{url} sent more than {MAX_TABLE_BYTES} bytes: not an answer table")
        return data
    raise DownloadError(
        target,
        f"could not fetch {url}: {reason}. Fetch it where the network allows and put it here, or point "
        "--tables-url at a copy",
    )


def fetch_table(url: str, target: Path, rows: int, timeout: float, log: Log) -> AnswerTable:
    """The answer table at ``target``, fetched from ``url`` unless a valid one is there; kept only if valid.

    Raises:
        DownloadError: naming ``target``, when it cannot be fetched or what came is not a table of ``rows``
            answers (then nothing is written).
    """
    if target.exists():
        try:
            table = checked_table(read_json(target), rows, str(target))
        except (OSError, ValueError) as err:
            log(f"fetching again: {_one_line(err)}")
        else:
            log(f"kept {target} ({len(table)} answers)")
            return table
    data = fetch_bytes(url, target, timeout)
    try:
        table = checked_table(json.loads(data.decode("utf-8")), rows, url)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DownloadError(
            target, f"refused {url}: not UTF-8 JSON ({_one_line(err)}); nothing written"
        ) from err
    except ValueError as err:
        raise DownloadError(target, f"refused {_one_line(err)}; nothing written") from err
    atomic_write_bytes(target, data)
    log(f"wrote {target} ({len(table)} answers, from {url})")
    return table


def fetch_checkpoint(name: str, root: Path, config: DownloadConfig, log: Log) -> Path:
    """One published LXMERT checkpoint into ``root/<repo name>``, with its answer table for VQA and GQA."""
    repo_id = LXMERT_REPOS[name]
    directory = root / repo_id.split("/")[1]
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(directory)
    for filename in (CONFIG_FILE, TORCH_WEIGHTS_FILE):
        place(hub_file(repo_id, filename, config.cache_dir, name), directory / filename, log)
    place(hub_file(VOCAB_REPO, VOCAB_FILE, config.cache_dir, name), directory / VOCAB_FILE, log)
    if name in TABLE_TASKS:
        rows = read_config(directory).num_qa_labels
        url = f"{config.tables_url.rstrip('/')}/{name}/{AUTHORS_ANSWERS_FILE}"
        fetch_table(url, directory / AUTHORS_ANSWERS_FILE, rows, config.timeout, log)
    return directory


def fetch_detector(root: Path, config: DownloadConfig, log: Log) -> Path:
    """The demo's detector weights converted into ``root/frcnn-vg-finetuned`` (kept if converted from the same
    revision)."""
    cached = hub_file(DETECTOR_REPO, TORCH_WEIGHTS_FILE, config.cache_dir, "detector")
    directory = root / DETECTOR_REPO.split("/")[1]
    # hf_hub_download answers with .../snapshots/<commit>/<file>.
    record = {"repo": DETECTOR_REPO, "revision": cached.parent.name, "file": TORCH_WEIGHTS_FILE}
    if read_json_record(directory / DETECTOR_SOURCE_FILE) == record and _is_detector(directory):
        log(f"kept {directory} (converted from {DETECTOR_REPO} at {record['revision']})")
        return directory
    log(f"converting {DETECTOR_REPO} into {directory}")
    with atomic_directory(directory) as tmp:
        try:
            convert(cached, tmp, vocab_dir=config.vocab_dir)
        except UnreadableFileError:
            raise
        except ValueError as err:  # tensors that do not fit the network
            raise DownloadError(cached, f"does not convert into a detector: {_one_line(err)}") from err
        atomic_write_text(tmp / DETECTOR_SOURCE_FILE, json.dumps(record, indent=2) + "\n")
    log(f"wrote {directory}")
    return directory


def _is_detector(directory: Path) -> bool:
    try:
        check_saved_detector(directory)
    except FileNotFoundError:
        return False
    return True


def _complete_checkpoint(directory: Path, with_table: bool) -> bool:
    files = (CONFIG_FILE, TORCH_WEIGHTS_FILE, VOCAB_FILE) + ((AUTHORS_ANSWERS_FILE,) if with_table else ())
    return all((directory / f).is_file() for f in files)


def write_set(root: Path, log: Log) -> Path | None:
    """``root/model_set.json`` naming the detector and every complete checkpoint in ``root``; None (and why, in
    the log) while either is missing."""
    detector = root / DETECTOR_REPO.split("/")[1]
    if not _is_detector(detector):
        log(f"model_set.json not written yet: no detector in {root} (python -m lxmert.hub download detector)")
        return None
    checkpoints = {}
    for name, repo_id in LXMERT_REPOS.items():
        directory = root / repo_id.split("/")[1]
        if _complete_checkpoint(directory, name in TABLE_TASKS):
            answers = directory / AUTHORS_ANSWERS_FILE if name in TABLE_TASKS else None
            checkpoints[name] = CheckpointEntry(directory, answers=answers)
    if not checkpoints:
        log(f"model_set.json not written yet: no checkpoint in {root} (python -m lxmert.hub download vqa)")
        return None
    default = next((name for name in ("vqa", "gqa") if name in checkpoints), None)
    return write_model_set(ModelSet(root.resolve(), SET_NAME, "real", detector, checkpoints, default))


def download(config: DownloadConfig, log: Log = print) -> Path | None:
    """Fetch what ``config.what`` names into ``config.to`` and write the model set once it is complete.

    Returns:
        The ``model_set.json`` written, or None while the directory lacks a detector or a checkpoint.

    Raises:
        DownloadError: the first file that cannot be fetched or is refused; what came before it is kept.
    """
    root = Path(config.to)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(root)
    for name in (n for n in PUBLISHED if n in config.what):  # the published order, each once
        if name == "detector":
            fetch_detector(root, config, log)
        else:
            fetch_checkpoint(name, root, config, log)
    return write_set(root, log)


def main(argv: Sequence[str] | None = None) -> None:
    parser = command_parser("python -m lxmert.hub", __doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fetch = commands.add_parser(
        "download", help="fetch the published weights and answer tables as a model set", description=__doc__
    )
    fetch.formatter_class = argparse.RawDescriptionHelpFormatter
    add_dataclass_arguments(fetch, DownloadConfig, "download")
    config = dataclass_from_args(DownloadConfig, parser.parse_args(argv))
    manifest = download(config)
    if manifest is not None:
        print(f"model set ready: {manifest}")


if __name__ == "__main__":
    run_cli(main)
