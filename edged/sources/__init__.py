"""Sources: frame producers (picamera2, video/V4L2/RTSP via one library, image files)."""
