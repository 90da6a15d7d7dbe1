"""Launch a real swtpm (TPM 2.0 simulator) for tests, the demo and the benchmark.

Test and demo infrastructure only: the device never starts a simulator. Facts (FACTS.md "TPM: swtpm +
tpm2-pytss"):

- `provision_template(dir)` runs `swtpm_setup --tpm2 --create-ek-cert --create-platform-cert --ecc` once with
  a private `swtpm_localca` configuration: the TPM state gets an RSA-2048 EK persisted at 0x81010001 with its
  certificate in NV 0x01c00002 (plus an ECC P-384 EK), signed by a local CA made in `dir/ca` (a root
  `swtpm-localca-rootca` and an intermediate issuer). ~1 s.
- `Swtpm(state_dir)` runs `swtpm socket --tpm2` on that state, on 127.0.0.1 (free port P, control port P+1)
  or on a unix socket S (control socket S.ctrl), with `--flags not-need-init,startup-clear`. `.tcti` is the
  TCTI string for tpm2-pytss / tpm2-tools. `stop()` sends SIGTERM (not an orderly TPM shutdown: send
  TPM2_Shutdown first, or `stop(orderly=True)`), `kill()` sends SIGKILL (a power cut), `start()` starts it
  again on the same state and address.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Swtpm", "SwtpmError", "SwtpmTemplate", "copy_state", "provision_template"]

_READY_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_LIVE: weakref.WeakSet[Swtpm] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """No simulator outlives the interpreter that started it (an interrupted test run, a crashed demo)."""
    for swtpm in list(_LIVE):
        swtpm.kill()


class SwtpmError(RuntimeError):
    """swtpm or swtpm_setup could not be started."""


@dataclass(frozen=True)
class SwtpmTemplate:
    """A manufactured TPM state (EK + certificates) and the local CA that signed the certificates."""

    state_dir: Path
    ca_dir: Path

    @property
    def ca_cert(self) -> Path:
        """The local CA's self-signed root certificate (PEM): the trust anchor for EK certificates."""
        return self.ca_dir / "swtpm-localca-rootca-cert.pem"

    @property
    def intermediate_cert(self) -> Path:
        """The local CA's issuer certificate (PEM) that signed the EK certificate; signed by `ca_cert`."""
        return self.ca_dir / "issuercert.pem"

    @property
    def ca_bundle(self) -> Path:
        """Root then intermediate in one PEM file."""
        return self.ca_dir / "bundle.pem"


def provision_template(directory: Path) -> SwtpmTemplate:
    """Manufacture a TPM state in `directory/state`; EK certificates from a new local CA in `directory/ca`."""
    directory = Path(directory)
    state_dir, ca_dir = directory / "state", directory / "ca"
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_dir.mkdir(parents=True, exist_ok=True)
    localca_conf = directory / "swtpm-localca.conf"
    localca_conf.write_text(
        f"statedir = {ca_dir}\n"
        f"signingkey = {ca_dir}/signkey.pem\n"
        f"issuercert = {ca_dir}/issuercert.pem\n"
        f"certserial = {ca_dir}/certserial\n"
    )
    localca_opts = directory / "swtpm-localca.options"
    localca_opts.write_text(
        "--platform-manufacturer Coffer\n--platform-version 2.1\n--platform-model swtpm\n"
    )
    setup_conf = directory / "swtpm_setup.conf"
    setup_conf.write_text(
        "create_certs_tool = /usr/bin/swtpm_localca\n"
        f"create_certs_tool_config = {localca_conf}\n"
        f"create_certs_tool_options = {localca_opts}\n"
        "active_pcr_banks = sha256\n"
    )
    log = directory / "swtpm_setup.log"
    cmd = [
        _tool("swtpm_setup"),
        "--tpm2",
        "--tpmstate",
        str(state_dir),
        "--create-ek-cert",
        "--create-platform-cert",
        "--ecc",
        "--config",
        str(setup_conf),
        "--logfile",
        str(log),
    ]
    # swtpm_setup honours XDG_CONFIG_HOME for a per-user config; keep it inside the directory.
    env = {**os.environ, "XDG_CONFIG_HOME": str(directory / "xdg")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        detail = log.read_text() if log.exists() else ""
        raise SwtpmError(f"swtpm_setup failed ({result.returncode}): {result.stderr}{detail}")
    template = SwtpmTemplate(state_dir=state_dir, ca_dir=ca_dir)
    template.ca_bundle.write_text(template.ca_cert.read_text() + template.intermediate_cert.read_text())
    return template


def copy_state(template: SwtpmTemplate, destination: Path) -> Path:
    """Copy the template's TPM state into `destination` (a fresh TPM with the same EK and certificates)."""
    destination = Path(destination)
    shutil.copytree(template.state_dir, destination, ignore=shutil.ignore_patterns(".lock"))
    return destination


class Swtpm:
    """One swtpm process serving `state_dir`; restartable on the same address after stop() or kill()."""

    def __init__(
        self,
        state_dir: Path,
        *,
        transport: Literal["tcp", "unix"] = "tcp",
        socket_dir: Path | None = None,
        log_level: int = 0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.transport = transport
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._socket_path: Path | None = None
        if transport == "unix":
            # AF_UNIX paths are limited to ~107 bytes: use a short private directory unless told otherwise.
            base = Path(socket_dir) if socket_dir is not None else Path(tempfile.mkdtemp(prefix="swtpm-"))
            self._socket_path = base / "tpm.sock"

    # -- address -----------------------------------------------------------------------------------------

    @property
    def tcti(self) -> str:
        """TCTI configuration string: `swtpm:host=127.0.0.1,port=P` or `swtpm:path=S`."""
        if self._socket_path is not None:
            return f"swtpm:path={self._socket_path}"
        if self._port is None:
            raise SwtpmError("swtpm has not been started yet")
        return f"swtpm:host=127.0.0.1,port={self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Swtpm:
        """Start swtpm (again) on the same state and address; returns when it accepts connections."""
        if self.running:
            raise SwtpmError("swtpm is already running")
        attempts = 1 if (self._socket_path is not None or self._port is not None) else 5
        last = ""
        for _ in range(attempts):
            fresh = self._socket_path is None and self._port is None
            port = _free_port_pair() if fresh else self._port
            try:
                self._spawn(port)
                return self
            except SwtpmError as exc:  # a port raced away between probe and bind: try another
                last = str(exc)
                if self._socket_path is None and attempts > 1:
                    self._port = None
        raise SwtpmError(last)

    def stop(self, *, orderly: bool = False) -> None:
        """SIGTERM and wait. swtpm's SIGTERM is not an orderly TPM shutdown: with `orderly=True`,
        `tpm2_shutdown` (TPM2_Shutdown(STATE)) is sent first, as a well-behaved client would have done."""
        if orderly and self.running:
            subprocess.run(
                [_tool("tpm2_shutdown"), "-T", self.tcti],
                capture_output=True,
                check=True,
                timeout=_STOP_TIMEOUT_S,
            )
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait: a power cut for the TPM."""
        self._signal(signal.SIGKILL)

    def restart(self, *, orderly: bool = False) -> Swtpm:
        self.stop(orderly=orderly)
        return self.start()

    def __enter__(self) -> Swtpm:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    # -- internals ---------------------------------------------------------------------------------------

    def _spawn(self, port: int | None) -> None:
        cmd = [
            _tool("swtpm"),
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={self.state_dir}",
            "--flags",
            "not-need-init,startup-clear",
        ]
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self._socket_path}.ctrl").unlink()
            cmd += [
                "--server",
                f"type=unixio,path={self._socket_path}",
                "--ctrl",
                f"type=unixio,path={self._socket_path}.ctrl",
            ]
        else:
            assert port is not None
            cmd += [
                "--server",
                f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            ]
        if self._log_level:
            cmd += ["--log", f"file={self.state_dir}/swtpm.log,level={self._log_level}"]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + _READY_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise SwtpmError(f"swtpm exited with {proc.returncode}: {err.strip()}")
                if self._ready(port):
                    break
                if time.monotonic() > deadline:
                    raise SwtpmError("swtpm did not accept connections in time")
                time.sleep(0.01)
        except BaseException:  # failed, or interrupted (a test timeout, ^C): leave no swtpm and no open pipe
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
        finally:
            if proc.stderr is not None:
                proc.stderr.close()
        self._proc = proc
        self._port = port
        _LIVE.add(self)

    def _ready(self, port: int | None) -> bool:
        # Both sockets must accept; an empty connection to the command channel is harmless (closed at once).
        try:
            if self._socket_path is not None:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(f"{self._socket_path}.ctrl")
                return Path(self._socket_path).exists()
            assert port is not None
            with socket.create_connection(("127.0.0.1", port + 1), timeout=1.0):
                pass
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                pass
            return True
        except OSError:
            return False

    def _signal(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None


def _free_port_pair() -> int:
    """A port P on 127.0.0.1 such that P and P+1 were both free a moment ago."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s2:
                s2.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise SwtpmError("no free port pair on 127.0.0.1")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SwtpmError(f"{name} not found: apt-get install swtpm swtpm-tools")
    return path
