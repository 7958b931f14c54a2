"""Data formats of the LXMERT ecosystem, read and written exactly, and the feature store.

Modules:
    tsv         the obj36 image-feature TSV (``iter_tsv``, ``write_tsv``, ``TsvWriter``), streamed
    store       the memory-mapped feature store (``FeatureStore``, ``FeatureStoreWriter``)
    task_files  task JSON readers (VQA, GQA, NLVR2, pre-training) and prediction-file writers
"""
