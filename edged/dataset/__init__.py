"""Datasets of annotated frames: the on-disk format, stats, export/import (COCO, VOC, YOLO), evaluation."""
