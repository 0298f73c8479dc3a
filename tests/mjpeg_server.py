"""A real MJPEG-over-HTTP camera for tests: multipart/x-mixed-replace JPEG frames, like IP cameras serve.

It can be stopped and restarted on the same port (a camera rebooting) and can
stall: keep the connection open but send nothing (a camera hanging).
"""

from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

BOUNDARY = "edgedframe"


class _Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True


class MjpegCamera:
    def __init__(self, photos: list[Path], *, fps: float = 20.0, port: int = 0) -> None:
        self.jpegs = []
        for photo in photos:
            buffer = io.BytesIO()
            Image.open(photo).convert("RGB").resize((320, 240)).save(buffer, "JPEG", quality=85)
            self.jpegs.append(buffer.getvalue())
        self.interval = 1.0 / fps
        self.port = port
        self.feeding = threading.Event()
        self.feeding.set()
        self.frames_sent = 0
        self._server: _Server | None = None
        self._generation = 0

    @property
    def url(self) -> str:
        return f"http://[::1]:{self.port}/stream.mjpg"

    def start(self) -> MjpegCamera:
        camera = self
        generation = self._generation = self._generation + 1

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                index = 0
                try:
                    while camera._generation == generation and camera._server is not None:
                        if not camera.feeding.is_set():
                            time.sleep(0.05)
                            continue
                        jpeg = camera.jpegs[index % len(camera.jpegs)]
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                        camera.frames_sent += 1
                        index += 1
                        time.sleep(camera.interval)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = _Server(("::1", self.port), Handler)
        self.port = self._server.server_address[1]
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                 daemon=True)
        serve.start()
        return self

    def stop(self) -> None:
        """The camera goes away: listening socket closed, open streams end."""
        server, self._server = self._server, None
        self._generation += 1
        if server is not None:
            server.shutdown()
            server.server_close()
