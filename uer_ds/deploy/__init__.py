"""Deployment, above `tasks/`: evaluation of a fine-tuned model (`uer-ds evaluate`), prediction from
texts through PyTorch or ONNX Runtime, HTTP serving (`uer-ds serve`), and analyses of a fine-tuned
classifier and its data (`uer-ds analyse`, in analysis/).  Never imports deepspeed
(tests/deploy/test_evaluate.py checks it): a model is loaded through the resolver
(uer_ds.convert.resolve), predicted with the runner's predict_examples in one process."""
