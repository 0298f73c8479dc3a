"""The second stage on detections: a classifier names what the detector found (a `bird` → its species).

settings.py is the `[[cameras.classify]]` table; plan.py what one job asks the
worker to classify and which detections qualify (pure, run in the worker, where
the frame is); crops.py cuts and classifies them there; stage.py is the
parent's side per camera: the plan for each frame (per-track interval, or K per
frame) and the subclass each track carries between classifications.
"""
