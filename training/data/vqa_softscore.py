"""VQA soft scores as the bottom-up-attention-vqa preprocessing computes them (``tools/compute_softscore.py``).

The authors' ``data/vqa/*.json`` labels come from that script: every annotator answer is normalised
(``preprocess_answer``: punctuation, number words, articles, contractions), the answer vocabulary keeps the normalised
``multiple_choice_answer`` values seen in at least 9 distinct questions of train+val (3129 answers), and a question's
label maps each in-vocabulary answer to ``get_score(#annotators who gave it)`` = 0.3 / 0.6 / 0.9 / 1.

Two faithful oddities of the original are kept on purpose, since they decide which strings end up as labels:
``period_strip`` is written ``(?!<=\\d)(\\.)(?!\\d)`` (a lookahead, so it strips any period not followed by a digit),
and it is called with ``re.UNICODE`` in the *count* position, so at most 32 periods go.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from lxmert.data.metrics import vqa_soft_score

# The contractions VQA's evaluator restores ("dont" -> "don't"); only words of this table are rewritten.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(\,)(\d)")
PERIOD_STRIP_COUNT = int(re.UNICODE)  # the original passes re.UNICODE where re.sub takes its count
MIN_ANSWER_OCCURRENCE = 9  # the answer vocabulary of the authors' 3129-answer table


def process_punctuation(text: str) -> str:
    """Drop a punctuation mark next to a space (or anywhere if a digit-comma-digit occurs), else make it a space."""
    out = text
    has_digit_comma = COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in PUNCTUATION:
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Lower-case, number words to digits, drop articles, restore contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


# Annotators repeat the same few strings and this runs for every annotator answer, so results are cached.
@functools.lru_cache(maxsize=1 << 16)
def preprocess_answer(answer: str) -> str:
    """The answer normalisation of compute_softscore.py: ``"Two."`` -> ``"2"``, ``"a Red!"`` -> ``"red"``."""
    return process_digit_article(process_punctuation(answer)).replace(",", "")


def multiple_choice_answer(answers: Sequence[str]) -> str:
    """The most frequent preprocessed answer (VQA's ``multiple_choice_answer``); ties go to the first given."""
    counts = Counter(preprocess_answer(a) for a in answers)
    return max(counts, key=counts.__getitem__)


def answer_vocabulary(
    questions: Iterable[tuple[int | str, str]], min_occurrence: int = MIN_ANSWER_OCCURRENCE
) -> list[str]:
    """Answers in label order: preprocessed multiple-choice answers seen in >= ``min_occurrence`` distinct questions.

    Args:
        questions: (question_id, multiple_choice_answer) pairs of the train+val questions.
        min_occurrence: the threshold (9 in the original).

    Returns:
        The label2ans list, in order of first appearance as the original's dict iteration gives it.
    """
    seen: dict[str, set] = {}
    for question_id, answer in questions:
        seen.setdefault(preprocess_answer(answer), set()).add(question_id)
    return [answer for answer, ids in seen.items() if len(ids) >= min_occurrence]


def soft_label(answers: Sequence[str], ans2label: dict[str, int]) -> dict[str, float]:
    """``{answer: get_score(count)}`` over the preprocessed annotator answers that are in the vocabulary."""
    counts = Counter(preprocess_answer(a) for a in answers)
    return {answer: vqa_soft_score(n) for answer, n in counts.items() if answer in ans2label}
