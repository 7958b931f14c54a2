"""The WordPiece trainer: merges computed by hand, the same vocabulary in every process, the corpus covered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lxmert.tokenization import LxmertTokenizer
from lxmert.wordpiece import learn_pieces, train_wordpiece, word_counts

# The classic BPE example, in WordPiece spelling: 'low' is l ##o ##w.
COUNTS = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
ALPHABET = ["##d", "##e", "##i", "##o", "##r", "##s", "##t", "##w", "l", "n", "w"]


def test_merges_follow_pair_frequency_with_ties_to_the_alphabetically_first_pair():
    # Pair counts at the start: (##e,##s) = (##s,##t) = 9, (##w,##e) = 8, (l,##o) = (##o,##w) = 7, ...
    # 1. ##e+##s (9, tie: '##e' < '##s')  2. ##es+##t (9)  3. ##o+##w (7, tie with l+##o: '#' < 'l')
    # 4. l+##ow (7)  5. ##e+##w (6, ties with n+##e and ##w+##est)  6. ##ew+##est (6)  7. n+##ewest (6)
    merged = ["##es", "##est", "##ow", "low", "##ew", "##ewest", "newest"]
    assert learn_pieces(COUNTS, size=100)[:18] == ALPHABET + merged
    assert learn_pieces(COUNTS, size=len(ALPHABET) + 7) == ALPHABET + merged
    # Merging stops at the first pair seen fewer times than min_frequency; the alphabet is always kept.
    assert learn_pieces(COUNTS, size=100, min_frequency=7) == ALPHABET + merged[:4]
    assert learn_pieces(COUNTS, size=3) == ALPHABET


def test_unlimited_vocabulary_holds_every_word_whole():
    pieces = learn_pieces(COUNTS, size=1000)
    assert set(COUNTS) <= set(pieces) and len(pieces) == len(set(pieces))


def test_words_are_split_and_folded_as_uncased_bert_does():
    assert word_counts(["Héllo, WORLD!", "hello world"]) == {"hello": 2, "world": 2, ",": 1, "!": 1}


CORPUS = [
    "a red circle is left of the blue square .",
    "what color is the heart ?",
    "there is a green triangle here .",
    "the white star is right of the red heart .",
] * 3


def test_same_corpus_gives_the_same_vocabulary_in_every_process(tmp_path):
    # tokenizers' own trainer breaks ties in hash-map order, so this once differed between runs.
    script = (
        "import sys; from lxmert.wordpiece import train_wordpiece; "
        f"train_wordpiece({CORPUS!r}, 45, sys.argv[1])"
    )
    written = []
    for hash_seed in ("1", "2", "3"):
        out = tmp_path / hash_seed / "vocab.txt"
        subprocess.run(
            [sys.executable, "-c", script, str(out)],
            check=True,
            cwd=Path(__file__).parents[1],
            env={"PYTHONHASHSEED": hash_seed, "PATH": ""},
        )
        written.append(out.read_text())
    assert written[0] == written[1] == written[2]
    assert written[0] == train_wordpiece(CORPUS, 45, tmp_path / "here").vocab_file.read_text()


def test_trained_vocabulary_tokenizes_its_corpus_without_unknown_words(tmp_path):
    tokenizer = train_wordpiece(CORPUS, 1000, tmp_path)
    assert isinstance(tokenizer, LxmertTokenizer)
    assert tokenizer.convert_ids_to_tokens(range(5)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # With room for every merge, each corpus word is one piece.
    for sentence in CORPUS:
        assert tokenizer.tokenize(sentence) == sentence.split()
