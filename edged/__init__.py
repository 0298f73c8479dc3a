"""edged: an edge inference daemon — camera → quantized SSD MobileNet (Edge TPU or CPU) → MQTT.

Importing the package is cheap and hardware-free: accelerators, cameras and
systemd bindings are imported only inside their adapters.
"""

__version__ = "0.1.0"
