"""The task registry: name → Task class, read by the shared trainer's command lines.

Entries are ``"module:Class"`` strings imported on first use, so one task's heavy or broken imports never stop
another task from loading. To add a task, write ``training/tasks/<name>.py`` with a ``Task`` subclass and add a
line here; a fine-tuning task also adds its name and file format to ``lxmert.data.task_files``.
"""

from __future__ import annotations

import importlib

from lxmert.data.task_files import FINETUNE_TASKS

from .base import MetricSums, Task

TASKS: dict[str, str] = {
    "pretrain": "training.tasks.pretraining:PretrainTask",
    "vqa": "training.tasks.vqa:VQATask",
    "gqa": "training.tasks.gqa:GQATask",
    "nlvr2": "training.tasks.nlvr2:NLVR2Task",
}
PRETRAIN_TASK = "pretrain"
# What `python -m training.finetune`, `training.evaluate`, `training.baselines` and `training.paper_tables` offer,
# FINETUNE_TASKS, is lxmert's one list of fine-tuning tasks (lxmert.data.task_files, beside their file formats):
# every task registered here but pre-training, in the same order (tests/test_finetune_tasks.py holds them equal).


def get_task(name: str) -> type[Task]:
    """The Task class registered under ``name``."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {sorted(TASKS)}")
    module_name, class_name = TASKS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["FINETUNE_TASKS", "PRETRAIN_TASK", "TASKS", "MetricSums", "Task", "get_task"]
