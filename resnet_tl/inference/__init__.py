"""Inference: classify image files (predict), sort them into class folders, test-time augmentation,
and the calibrated confidence that decides when a prediction is unsure."""
