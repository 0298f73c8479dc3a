"""Recording: keep frames with the model's detections as a dataset, by policy, off the hot path, under a quota."""
