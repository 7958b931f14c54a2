"""The synthetic visual world: scenes, captions, questions and statements in the real LXMERT data formats.

No VQA, GQA, NLVR2, COCO or Visual Genome data can be downloaded here, so every stage of the system (detector,
feature extraction, pre-training, fine-tuning, tests, the app's default model) runs on this world instead. It is
deterministic from a seed, and everything is written in the formats the real data ships in, so the same loaders
read both.

Generate one::

    python -m training.world --out data/world --images 3000 --seed 0

Modules:
    scenes      vocabularies (SHAPES, COLOURS, SIZES, FILLS), the Scene / SceneObject / Relation dataclasses,
                ``sample_scene(rng, size, kinds=1)``, ``render_scene(scene)``, VG-style vocabulary files
    language    functional programs and their executor; GQA- and VQA-style question families; captions
    annotators  ten noisy VQA annotator answers per question (turned into soft scores by training.data)
    statements  NLVR2-style statements over image pairs, several pairs per statement
    generate    ``WorldConfig`` and ``build_world``; the directory layout is documented there
    template_priors  each task's answer prior per question template, its table and scores
                (``python -m training.world.template_priors``; ``.baselines`` is its former name)
    preview     a contact sheet of scenes with their boxes (``python -m training.world.preview``)
"""
