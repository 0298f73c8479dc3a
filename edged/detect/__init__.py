"""Detector: model files, runtime, backends (Edge TPU / CPU), pre- and postprocessing."""
