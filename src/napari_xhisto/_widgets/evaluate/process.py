"""A separate Python process for Evaluate's computing (no GIL shared with the viewer).

The metrics call C code that holds Python's GIL for a long time (``skimage.draw.polygon`` fills
a 5000-vertex region outline on a 512 x 512 map in seconds without releasing it); in a thread,
that freezes the viewer as much as running on the GUI thread would. A child process keeps the
GUI thread's event loop free whatever the metrics do, and lets Cancel stop a job at once.
"""

from __future__ import annotations

import atexit
import os
import threading

from ...errors import XhistoError
from .core import EvaluateJob, compute


def _serve(conn) -> None:
    """The compute process: evaluate each job received on ``conn``, reporting as it goes."""
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            gen = compute(job)
            while True:
                try:
                    conn.send(("progress", next(gen)))
                except StopIteration as stop:
                    conn.send(("result", stop.value))
                    break
        except Exception as exc:  # noqa: BLE001 - relayed to the GUI, which shows it
            kind = XhistoError if isinstance(exc, XhistoError | ValueError) else RuntimeError
            conn.send(("error", kind(str(exc) or type(exc).__name__)))


class ComputeProcess:
    """One long-lived child Python process that runs :func:`compute`.

    Started at the first job (its imports take a second or two) and reused; a cancelled job
    ends the process (the next job starts a new one), so Cancel takes effect at once even in
    the middle of a long C call. The child is ``python -m`` this module, talking over a local
    socket with an auth key: unlike ``multiprocessing``'s spawn, it never re-runs the user's
    main script (a napari script without a ``__main__`` guard would open a second viewer).
    """

    POLL_S = 0.05
    START_TIMEOUT_S = 120.0

    def __init__(self):
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None

    def _ensure(self):
        if self._proc is not None and self._proc.poll() is None:
            return
        import json
        import secrets
        import subprocess
        import sys
        from multiprocessing.connection import Listener

        key = secrets.token_bytes(32)
        with Listener(authkey=key) as listener:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
            self._proc.stdin.write(json.dumps({"address": listener.address,
                                               "key": key.hex()}).encode())
            self._proc.stdin.close()
            sock = getattr(getattr(listener, "_listener", None), "_socket", None)
            if sock is not None:  # POSIX sockets: never wait forever for a child that died
                sock.settimeout(self.START_TIMEOUT_S)
            try:
                self._conn = listener.accept()
            except OSError as err:
                self.stop()
                raise RuntimeError(f"the evaluation process did not start: {err}") from err

    def start_soon(self) -> None:
        """Start the child in the background (its imports take seconds), if not running."""
        def start():
            with self._lock:
                try:
                    self._ensure()
                except RuntimeError:  # the next job reports it
                    pass

        if self._proc is None or self._proc.poll() is not None:
            threading.Thread(target=start, name="xhisto-evaluate-start", daemon=True).start()

    def stop(self) -> None:
        """End the child process (a job in progress is dropped)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def run(self, job: EvaluateJob):
        """Generator: relays the child's ``(done, total)``; returns its outcome."""
        with self._lock:
            self._ensure()
            finished = False
            try:
                self._conn.send(job)
                while True:
                    if not self._conn.poll(self.POLL_S):
                        if self._proc.poll() is not None:
                            raise RuntimeError("the evaluation process ended unexpectedly")
                        continue
                    kind, payload = self._conn.recv()
                    if kind == "progress":
                        yield payload
                    elif kind == "error":
                        finished = True
                        raise payload
                    else:
                        finished = True
                        return payload
            finally:
                if not finished:  # cancelled (or broken): stop the work where it is
                    self.stop()


SERVER = ComputeProcess()
atexit.register(SERVER.stop)


def main() -> None:
    """The child's side: connect back to the parent, then serve jobs until it goes away."""
    import json
    import sys
    from multiprocessing.connection import Client

    hello = json.loads(sys.stdin.buffer.read().decode())
    address = hello["address"]
    _serve(Client(tuple(address) if isinstance(address, list) else address,
                  authkey=bytes.fromhex(hello["key"])))


if __name__ == "__main__":
    main()
