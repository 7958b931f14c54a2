"""``python -m training.baselines``: the answer-prior baseline of a fine-tuning task (:mod:`training.tasks.answer_priors`)."""

from lxmert.errors import run_cli
from training.tasks.answer_priors import main

if __name__ == "__main__":
    run_cli(main)
