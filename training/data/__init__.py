"""Data preparation beside the formats of :mod:`lxmert.data`.

Modules:
    convert        ``python -m training.data.convert --tsv F [F ...] --out STORE``
    vqa_softscore  the bottom-up-attention-vqa answer preprocessing and soft scores behind the VQA labels
"""
