"""Data formats of the LXMERT ecosystem, read and written exactly, and the feature store.

Modules:
    tsv         the obj36 image-feature TSV (``iter_tsv``, ``write_tsv``, ``TsvWriter``), streamed
    store       the memory-mapped feature store (``FeatureStore``, ``FeatureStoreWriter``)
    task_files  task JSON readers (VQA, GQA, NLVR2, pre-training) and prediction-file writers
    metrics     the tasks' official metrics (VQA soft score, GQA exact match, NLVR2 accuracy and consistency)
    dataset     ``dataset.json``: an images folder, its feature store and an optional question file, as one set
"""
