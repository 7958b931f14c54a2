"""``python -m training.finetune``: fine-tuning on VQA, GQA or NLVR2 (:mod:`training.tasks.finetuning`)."""

from lxmert.errors import run_cli
from training.tasks.finetuning import main

if __name__ == "__main__":
    run_cli(main)
