"""Recording: frames with the model's detections kept as a dataset, by policy, off the hot path."""
