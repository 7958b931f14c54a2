"""Training an uncased WordPiece vocabulary that is the same for the same corpus, in every process.

The merges are those of ``tokenizers``' WordPiece trainer (a BPE over pieces, continuations spelled ``##x``): the
most frequent adjacent pair is merged, in every word, left to right. That trainer breaks ties between equally
frequent pairs in hash-map order, which changes from process to process, so one corpus gave different vocabularies,
hence different ids and a different model initialisation, on every run. Here a tie goes to the alphabetically first
pair, and the text is normalised and split by ``tokenizers``' own BERT normaliser and pre-tokeniser, as the
tokenizer that reads the vocabulary does.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from .fileio import atomic_write_text
from .tokenization import SPECIAL_TOKENS, VOCAB_FILE, LxmertTokenizer

CONTINUATION = "##"

Pair = tuple[str, str]


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each word occurs, after BERT uncased normalisation and splitting on whitespace and punctuation."""
    normalizer, pre_tokenizer = BertNormalizer(lowercase=True), BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def _pairs(pieces: list[str]) -> list[Pair]:
    return list(zip(pieces, pieces[1:], strict=False))


def _merge(pieces: list[str], pair: Pair) -> list[str]:
    merged, index = [], 0
    while index < len(pieces):
        if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == pair:
            merged.append(pieces[index] + pieces[index + 1].removeprefix(CONTINUATION))
            index += 2
        else:
            merged.append(pieces[index])
            index += 1
    return merged


def learn_pieces(counts: Mapping[str, int], size: int, min_frequency: int = 1) -> list[str]:
    """The alphabet (sorted), then merged pieces in the order they were learnt, ``size`` pieces at most.

    Args:
        counts: word → occurrences, words already normalised and split.
        size: the most pieces to return (the alphabet is kept whole, as ``tokenizers`` keeps it).
        min_frequency: merging stops at the first pair seen fewer times than this.
    """
    words = [
        ([word[0], *(CONTINUATION + c for c in word[1:])], n) for word, n in sorted(counts.items()) if word
    ]
    pieces = sorted({piece for split, _ in words for piece in split})
    known = set(pieces)
    pair_counts: Counter[Pair] = Counter()
    holders: defaultdict[Pair, set[int]] = defaultdict(set)
    for index, (split, n) in enumerate(words):
        for pair in _pairs(split):
            pair_counts[pair] += n
            holders[pair].add(index)
    # Entries are (-count, pair): the most frequent pair first, ties to the alphabetically first; an entry whose
    # count is no longer the pair's is stale and skipped.
    queue = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(queue)
    while len(pieces) < size and queue:
        negative, best = heapq.heappop(queue)
        if pair_counts.get(best) != -negative:
            continue
        if -negative < min_frequency:
            break
        changed: set[Pair] = set()
        for index in sorted(holders.pop(best)):
            split, n = words[index]
            for pair in _pairs(split):
                pair_counts[pair] -= n
                holders[pair].discard(index)
                changed.add(pair)
            split = _merge(split, best)
            words[index] = (split, n)
            for pair in _pairs(split):
                pair_counts[pair] += n
                holders[pair].add(index)
                changed.add(pair)
        for pair in changed:
            if pair_counts[pair] > 0:
                heapq.heappush(queue, (-pair_counts[pair], pair))
            else:
                del pair_counts[pair]
                holders.pop(pair, None)
        new = best[0] + best[1].removeprefix(CONTINUATION)
        if new not in known:
            known.add(new)
            pieces.append(new)
    return pieces


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, out_path: str | Path, min_frequency: int = 1
) -> LxmertTokenizer:
    """Train an uncased WordPiece vocabulary on a corpus, write its ``vocab.txt`` and return its tokenizer.

    The special tokens take ids 0-4 (``[PAD]`` = 0, as the model's padding index expects), then the corpus
    alphabet, then merged pieces until ``vocab_size`` is reached or nothing is left to merge.

    Args:
        texts: the corpus, one sentence (or document) per item.
        vocab_size: the largest vocabulary to build, special tokens included.
        out_path: where to write ``vocab.txt`` (a file path; a directory gets ``vocab.txt`` inside it).
        min_frequency: pairs seen fewer times than this are not merged.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    out_path = Path(out_path)
    if out_path.is_dir():
        out_path = out_path / VOCAB_FILE
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pieces = learn_pieces(word_counts(texts), vocab_size - len(SPECIAL_TOKENS), min_frequency)
    tokens = [*SPECIAL_TOKENS, *(piece for piece in pieces if piece not in SPECIAL_TOKENS)]
    atomic_write_text(out_path, "".join(token + "\n" for token in tokens))
    return LxmertTokenizer(out_path)


__all__ = ["learn_pieces", "train_wordpiece", "word_counts"]
