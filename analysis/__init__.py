"""Interpretability for LXMERT: plain functions over one example or a data set, returning plain data.

Modules, one job each:

- ``inputs``: the :class:`~analysis.inputs.Example` every tool takes (tokens + regions, unpadded) and its builders.
- ``forward``: running a model in eval mode and reading its answers.
- ``attention``: every attention family per layer and head, and per-head statistics.
- ``relevancy``: raw attention, rollout over the three encoders, Chefer et al.'s gradient relevancy.
- ``masked``: masked-word and masked-object predictions, the cross-modal ablation gauge.
- ``attributions``: Captum integrated gradients and occlusion.
- ``interventions``: head masks and pruning, region edits, gradient head importance.
- ``edits``: edits of an input as replayable records (region edits, silenced and pruned heads).
- ``counterfactual``: an input before and after edits (answers, attention, relevancy).
- ``faithfulness``: the perturbation test over a data set (``python -m analysis.faithfulness``) and per example.
- ``compare``: checkpoints side by side (answers, attention divergence, CKA, training curves).
- ``probing``: linear probes, projections and nearest neighbours over a data set.
- ``probe_curves``: probes of every layer of both streams for the detector's labels (which layer knows colour).
- ``export``: JSON / NPZ export with checkpoint id, boxes and settings.
- ``session``: everything the app shows for one image and question, in one call.
- ``datasets``: task JSON questions with their images' regions.

Nothing here imports ``training`` or ``app``, and nothing changes a model for good.
"""
