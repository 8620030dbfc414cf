"""Running the gateway inside `ob serve`'s event loop (or a test's) with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI


class _Embedded(uvicorn.Server):
    """uvicorn as one part of a process: the process's signals stay with its owner (`ob serve`
    stops on SIGINT/SIGTERM and then stops the server), uvicorn does not take them over."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CannotListen(Exception):
    """The gateway cannot listen where the settings say; the message names what to change."""


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 picks a free one); CannotListen says why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then,
    # and without it every response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as err:
        sock.close()
        raise CannotListen(_why(err, host, port)) from None
    sock.setblocking(False)
    return sock


def _why(err: OSError, host: str, port: int) -> str:
    if err.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use (another ob serve?); stop that, or set "
            "OB_GATEWAY_PORT to a free port"
        )
    if err.errno == errno.EACCES:
        return (
            f"not allowed to listen on port {port} of {host} (ports below 1024 need "
            "privileges); set OB_GATEWAY_PORT to 1024 or above"
        )
    if err.errno == errno.EADDRNOTAVAIL or isinstance(err, socket.gaierror):
        return (
            f"cannot listen on {host}: not an address of this machine; set OB_GATEWAY_HOST "
            "(127.0.0.1 for this machine only, 0.0.0.0 for every interface)"
        )
    reason = err.strerror or str(err)
    return f"cannot listen on {host}:{port} ({reason}); check OB_GATEWAY_HOST and OB_GATEWAY_PORT"


class Gateway:
    """The gateway's HTTP server on a socket bound once, for the life of the process.

    `start` serves a fresh app from `make_app` (an app's lifespan runs once; a start-up failure
    raises); `run` is the supervised part: it returns when `until` is set, raises when the
    server stopped serving by itself, and when called again after that serves anew on the same
    socket; `close` shuts the server down gracefully, first telling the app (its
    `state.closing`, if it has one) so that requests waiting for work answer at once instead of
    holding the shutdown up."""

    def __init__(
        self,
        make_app: Callable[[], FastAPI],
        host: str,
        port: int,
        sock: socket.socket | None = None,
    ):
        self._sock = sock or listen(host, port)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._make_app = make_app
        self._server: _Embedded | None = None
        self._task: asyncio.Task[None] | None = None
        self._app: FastAPI | None = None

    async def start(self) -> None:
        self._app = self._make_app()
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            proxy_headers=False,  # nothing here reads client addresses
        )
        self._server = server = _Embedded(config)
        self._task = asyncio.create_task(self._serve(server))
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"the gateway on {self.url} ended while starting")
            await asyncio.sleep(0.01)

    async def _serve(self, server: _Embedded) -> None:
        try:
            # a duplicate: uvicorn closes the sockets it served on, the gateway keeps its own
            await server.serve(sockets=[self._sock.dup()])
        except SystemExit:  # uvicorn's answer to a failed start-up (logged above it)
            raise RuntimeError(f"the gateway on {self.url} did not start") from None

    async def run(self, until: asyncio.Event) -> None:
        if self._task is None or self._task.done():
            await self.start()
        assert self._task is not None
        stopping = asyncio.create_task(until.wait())
        try:  # waiting never cancels the server: close() shuts it down gracefully
            await asyncio.wait({self._task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not until.is_set():
            self._task.result()  # the server's own error, for the supervisor to log
            raise RuntimeError(f"the gateway on {self.url} stopped serving")

    async def close(self) -> None:
        closing = getattr(self._app.state, "closing", None) if self._app is not None else None
        if closing is not None:
            closing()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait({self._task})
        self._sock.close()


@asynccontextmanager
async def serving(
    make_app: Callable[[], FastAPI], host: str, port: int, sock: socket.socket | None = None
) -> AsyncIterator[Gateway]:
    """Serve the app `make_app` builds until the block exits, on `sock` or a socket listening
    on host:port (port 0 picks a free port); yields the gateway, whose `url` is its base URL."""
    gateway = Gateway(make_app, host, port, sock)
    try:
        await gateway.start()
        yield gateway
    finally:
        await gateway.close()
