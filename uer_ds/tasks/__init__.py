"""Fine-tuning tasks: TASKS is the one registry (name -> Task).  `uer-ds finetune <name>` and
`uer-ds infer <name>` list its keys; a new task is a Task subclass (head + reader + metrics +
writer, see base.py) added here."""
from uer_ds.tasks.base import Task, TaskData, predict_outputs
from uer_ds.tasks.classifier import ClassifierHead, ClassifierTask, MtClassifierTask, soft_target_result
from uer_ds.tasks.data import Example, TaskDataError
from uer_ds.tasks.dbqa import DbqaTask
from uer_ds.tasks.model import TaskModel, load_task_model, select_pretrained
from uer_ds.tasks.mrc import CmrcTask
from uer_ds.tasks.multi_label import MultiLabelClassifierTask
from uer_ds.tasks.multiple_choice import C3Task
from uer_ds.tasks.ner import NerTask
from uer_ds.tasks.regression import RegressionTask

TASKS: dict[str, Task] = {
    "classifier": ClassifierTask(),
    "mt_classifier": MtClassifierTask(),
    "multi_label_classifier": MultiLabelClassifierTask(),
    "regression": RegressionTask(),
    "ner": NerTask(),
    "cmrc": CmrcTask(),
    "c3": C3Task(),
    "dbqa": DbqaTask(),
}

__all__ = ["TASKS", "ClassifierHead", "ClassifierTask", "Example", "MtClassifierTask", "MultiLabelClassifierTask", "RegressionTask",
           "Task", "TaskData", "TaskDataError", "TaskModel", "load_task_model", "predict_outputs",
           "select_pretrained", "soft_target_result"]
