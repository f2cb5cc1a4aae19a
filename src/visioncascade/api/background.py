"""The API served by uvicorn in a background thread of this process (the demo, tests, notebooks)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from visioncascade.api.app import create_app
from visioncascade.api.settings import Settings
from visioncascade.errors import ApiError

__all__ = ["BackgroundServer", "free_port"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundServer:
    """``create_app(settings)`` on 127.0.0.1 (a free port unless ``port`` is given), in a daemon thread.

    Use :meth:`start` / :meth:`stop`, or ``with BackgroundServer(settings) as server: ...``.
    """

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving; returns once the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ApiError(f"the API server on {self.base_url} did not start within {timeout:.0f} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
