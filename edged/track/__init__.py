"""Tracking: which detection is which object over time, where it is (zones), and what happened (events).

A pure stage between detect and publish: detections and capture times in,
tracks, zone occupancy and events out. It knows nothing about MQTT, frames'
pixels or files, so the daemon, `edged track` (MOTChallenge replay) and the
benchmarks all run the same code.
"""
