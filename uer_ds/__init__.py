"""uer_ds: pre-training and fine-tuning in the line of UER-py, on DeepSpeed."""
__version__ = "0.1.0"
