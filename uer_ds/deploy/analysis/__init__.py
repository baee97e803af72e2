"""`uer-ds analyse`: what a fine-tuned classifier learned and what its data look like (issue 25 item 2),
each with a well-kept library where one exists:

  explain      token attributions of each prediction: integrated gradients (Captum's LayerIntegratedGradients
               on the embedding layer's output) -> a coloured HTML page and a TSV       (explain.py)
  mislabelled  likely mislabelled training rows: confident learning (cleanlab) on out-of-fold probabilities
               from K fine-tunings through the `uer-ds finetune` / `uer-ds infer` command line (mislabelled.py)
  support      test rows with weak support in the training data: cosine nearest training rows in the vectors
               the classifier head reads, a support score per row                      (support.py)

The calls into the task API (loading a task model, reading a labelled file, running the model) are kept in
common.py, so a change of those signatures touches one file.
"""
