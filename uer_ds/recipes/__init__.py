"""Recipes: what a command does, as named steps, between the command line (uer_ds.cli: flags and
launching only) and the parts it puts together (data, models, tasks, engine, uer_ds.train's loop).

- pretrain: plan -> launch -> build -> run -> export (pretrain_data: the dataset and resume bookkeeping);
- finetune: plan -> build -> run -> export (finetune_resume: the resumable run's bookkeeping);
- infer: a fine-tuned model -> predictions of a file; select_extract: select a paragraph, then extract;
- predict: batches of examples -> outputs, metrics, bad cases (shared by fine-tuning's evaluation,
  inference, deploy/evaluate and serve);
- inputs: what the recipes read from the flags (tokenizer, model config, the job's fingerprint);
- bench_finetune: `uer-ds bench finetune`.

Imports go one way: uer_ds.cli and uer_ds.deploy import recipes; recipes import tasks, engine, models,
data, config; nothing below imports recipes or the CLI (tests/test_import_graph.py).
"""
