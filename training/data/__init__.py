"""Data formats of the LXMERT ecosystem, read and written exactly, and the feature store.

Modules:
    tsv            the obj36 image-feature TSV (``iter_tsv``, ``write_tsv``, ``TsvWriter``), streamed
    store          the memory-mapped feature store (``FeatureStore``, ``FeatureStoreWriter``)
    convert        ``python -m training.data.convert --tsv F [F ...] --out STORE``
    tasks          task JSON readers (VQA, GQA, NLVR2, pre-training) and prediction-file writers
    vqa_softscore  the bottom-up-attention-vqa answer preprocessing and soft scores behind the VQA labels
"""
