"""Ten simulated VQA annotators per question: mostly right, with the noise real VQA answers have.

Each question gets its own agreement rate. An annotator who agrees still writes the answer their own way
(capitals, a trailing period, an article, a number word — all undone by VQA's answer preprocessing) or uses a
synonym that the preprocessing keeps apart ("grey", "violet"), as in real VQA. One who disagrees confuses the answer
with a similar one (orange for red, pentagon for hexagon, a count off by one, the opposite yes/no) or makes a typo.
The soft scores that come out are therefore below 1 for many questions, as in the authors' VQA labels.
"""

from __future__ import annotations

import numpy as np

from training.world.language import NUMBER_WORDS

CONFUSIONS = {
    "red": ("orange", "pink"),
    "orange": ("red", "yellow", "brown"),
    "yellow": ("orange",),
    "green": ("blue",),
    "blue": ("purple", "green"),
    "purple": ("pink", "blue"),
    "pink": ("purple", "red"),
    "brown": ("orange", "red"),
    "gray": ("white",),
    "white": ("gray",),
    "circle": ("oval",),
    "square": ("rectangle", "diamond"),
    "triangle": ("arrow",),
    "diamond": ("square",),
    "pentagon": ("hexagon",),
    "hexagon": ("pentagon", "circle"),
    "star": ("cross",),
    "cross": ("star", "plus"),
    "heart": ("circle",),
    "arrow": ("triangle",),
    "yes": ("no",),
    "no": ("yes",),
}
SYNONYMS = {"gray": "grey", "purple": "violet", "circle": "round", "cross": "plus sign", "yes": "yep"}
ARTICLE_NOUNS = frozenset(
    {"circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross", "heart", "arrow"}
)
AGREEMENT_RANGE = (0.55, 1.0)
RESTYLE_PROBABILITY = 0.3  # an agreeing annotator writes the answer in their own style
SYNONYM_PROBABILITY = 0.1
TYPO_PROBABILITY = 0.25  # of the disagreements


def _restyled(answer: str, rng: np.random.Generator) -> str:
    """The same answer written differently; VQA's preprocessing maps all of these back to ``answer``."""
    styles = [answer.capitalize(), answer + ".", answer + "!"]
    if answer in ARTICLE_NOUNS:
        styles.append(("an " if answer[0] in "aeiou" else "a ") + answer)
    if answer.isdigit() and int(answer) < len(NUMBER_WORDS):
        styles.append(NUMBER_WORDS[int(answer)])
    return styles[rng.integers(len(styles))]


def _confused(answer: str, rng: np.random.Generator) -> str:
    if answer.isdigit():
        return str(max(0, int(answer) + (1 if rng.random() < 0.5 or answer == "0" else -1)))
    options = CONFUSIONS.get(answer)
    if not options:
        return _typo(answer, rng)
    return options[rng.integers(len(options))]


def _typo(answer: str, rng: np.random.Generator) -> str:
    if len(answer) < 3:
        return answer + answer[-1]
    i = int(rng.integers(len(answer) - 1))
    if rng.random() < 0.5:
        return answer[:i] + answer[i + 1] + answer[i] + answer[i + 2 :]  # swapped letters
    return answer[:i] + answer[i + 1 :]  # a dropped letter


def annotator_answers(answer: str, rng: np.random.Generator, count: int = 10) -> list[str]:
    """``count`` noisy answers from annotators who saw a question whose true answer is ``answer``."""
    agreement = rng.uniform(*AGREEMENT_RANGE)
    answers = []
    for _ in range(count):
        if rng.random() < agreement:
            if answer in SYNONYMS and rng.random() < SYNONYM_PROBABILITY:
                answers.append(SYNONYMS[answer])
            elif rng.random() < RESTYLE_PROBABILITY:
                answers.append(_restyled(answer, rng))
            else:
                answers.append(answer)
        elif rng.random() < TYPO_PROBABILITY:
            answers.append(_typo(answer, rng))
        else:
            answers.append(_confused(answer, rng))
    return answers
