"""A segmenter on a camera: the share of the picture, and of each zone, that every class covers.

settings.py is the `[cameras.segment]` table; areas.py turns a class map into
the shares the `…/segments` payload and the retained zone coverage carry (zone
masks made once per picture size). The model runs in an inference worker like
the detector; only its postprocess (edged/detect/segmentation.py) differs.
"""
