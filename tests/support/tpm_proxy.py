"""A TCP relay in front of a swtpm that counts TPM commands on the wire: an independent witness for the
adapter's TCTI-level counter, and for what tpm2-tools sends through the same transport.

The swtpm TCTI talks raw TPM 2.0 commands on the server port (one connection per command) and uses the
control port (P+1) for out-of-band requests; both are relayed, only the server port is parsed. Each command
starts with a 10-byte header: tag (2), commandSize (4), commandCode (4) (TPM 2.0 Part 1 §18.2).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable


class TpmWireCounter:
    """Listens on 127.0.0.1:P and P+1 and relays to `target_port` and `target_port + 1`."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._lock = threading.Lock()
        self._codes: list[int] = []
        self.frames: list[bytes] = []  # every command and response frame, in order (to look for secrets)
        self._retries = 0
        self._last_command = b""
        self._resubmit_expected = False
        self._stop = threading.Event()
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.port = self._listen_pair()

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def codes(self) -> list[int]:
        with self._lock:
            return list(self._codes)

    @property
    def count(self) -> int:
        """Commands on the wire, not counting resubmissions after TPM_RC_RETRY/YIELDED/TESTING."""
        with self._lock:
            return len(self._codes)

    @property
    def retries(self) -> int:
        with self._lock:
            return self._retries

    def _listen_pair(self) -> int:
        for _ in range(100):
            a = socket.socket()
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            b = socket.socket()
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                a.close()
                b.close()
                continue
            for sock, target, parse in ((a, self._target, True), (b, self._target + 1, False)):
                sock.listen(8)
                sock.settimeout(0.2)
                self._listeners.append(sock)
                thread = threading.Thread(target=self._accept_loop, args=(sock, target, parse), daemon=True)
                thread.start()
                self._threads.append(thread)
            return port
        raise RuntimeError("no free port pair")

    def _accept_loop(self, listener: socket.socket, target: int, parse: bool) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", target))
            on_command = self._parser(self._on_command) if parse else None
            on_response = self._parser(self._on_response) if parse else None
            args = (client, upstream, on_command, on_response)
            threading.Thread(target=self._serve, args=args, daemon=True).start()

    def _on_command(self, frame: bytes) -> None:
        with self._lock:
            self.frames.append(frame)
            if self._resubmit_expected and frame == self._last_command:
                self._retries += 1
            else:
                self._codes.append(int.from_bytes(frame[6:10], "big"))
            self._resubmit_expected = False
            self._last_command = frame

    def _on_response(self, frame: bytes) -> None:
        with self._lock:
            self.frames.append(frame)
            self._resubmit_expected = int.from_bytes(frame[6:10], "big") in (0x922, 0x908, 0x90A)

    def _serve(
        self,
        client: socket.socket,
        upstream: socket.socket,
        on_data: Callable[[bytes], None] | None,
        on_response: Callable[[bytes], None] | None,
    ) -> None:
        back = threading.Thread(target=self._pump, args=(upstream, client, on_response), daemon=True)
        back.start()
        self._pump(client, upstream, on_data)
        back.join()
        client.close()
        upstream.close()

    @staticmethod
    def _parser(on_frame: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """Cut a byte stream into TPM command or response frames (header: tag, size, code/rc)."""
        buffer = bytearray()

        def feed(data: bytes) -> None:
            buffer.extend(data)
            while len(buffer) >= 10:
                _tag, size, _code = struct.unpack(">HII", bytes(buffer[:10]))
                if len(buffer) < size:
                    return
                on_frame(bytes(buffer[:size]))
                del buffer[:size]

        return feed

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, on_data: Callable[[bytes], None] | None) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if on_data is not None:
                    on_data(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        for sock in self._listeners:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2)
