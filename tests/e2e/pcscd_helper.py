"""Helpers that run a private pcscd (with vsmartcard's vpcd driver) and a
card server connected to it. The tests start and stop every process
themselves; pcscd is started as ``pcscd --foreground --error`` with the
system reader configuration (/etc/reader.conf.d/vpcd: vpcd on 35963/35964).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

PCSCD_PID_FILE = Path("/run/pcscd/pcscd.pid")
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_PORT = 35963
READER = "Virtual PCD 00 00"
WORK_DIR = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Call ``probe`` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_error = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)


def port_listening(port: int) -> bool:
    """True when some process listens on TCP ``port`` (reads /proc, no connect:
    a connection to vpcd's port would be taken for a card)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "0A":  # 0A = LISTEN
                return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_stale_pcscd() -> None:
    """Stop a pcscd left over by an earlier run (found by its pid file)."""
    try:
        pid = int(PCSCD_PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return
    if comm != "pcscd":
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for("stale pcscd to exit", lambda: not _pid_alive(pid), timeout=5)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        wait_for("stale pcscd to die", lambda: not _pid_alive(pid), timeout=5)


class Pcscd:
    """A pcscd started (and restartable) by the tests."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [shutil.which("pcscd") or "/usr/sbin/pcscd", "--foreground", "--error"]

    def start(self) -> None:
        stop_stale_pcscd()
        wait_for("port 35963 to be free", lambda: not port_listening(VPCD_PORT), timeout=10)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"pcscd exited with {proc.returncode}; see {self.log_path}")
            return PCSCD_PID_FILE.exists() and port_listening(VPCD_PORT)

        wait_for("pcscd to listen", up, timeout=10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def pcscd_unavailable() -> str | None:
    if shutil.which("pcscd") is None and not Path("/usr/sbin/pcscd").exists():
        return "pcscd is not installed"
    if not VPCD_DRIVER.exists():
        return "vsmartcard-vpcd is not installed"
    if os.geteuid() != 0 and not os.access("/run", os.W_OK):
        return "pcscd needs to write /run/pcscd"
    return None


class CardServer:
    """``python -m cardlab.emulator.transports.vpcd IMAGE`` in a subprocess."""

    def __init__(
        self, image: Path, log_path: Path, port: int = VPCD_PORT, *, cli: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        self.image = image
        self.log_path = log_path
        self.port = port
        if cli:  # through the command line: cardlab card serve IMAGE --vpcd
            command = [sys.executable, "-m", "cardlab", "card", "serve", str(image), "--vpcd", "--port", str(port)]
        else:
            command = [sys.executable, "-m", "cardlab.emulator.transports.vpcd", str(image), "--port", str(port), "-v"]
        command += list(extra)  # e.g. --interface contactless
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=WORK_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def connect_reader(reader_name: str = READER, timeout: float = 15.0) -> Any:
    """A connected pyscard PC/SC connection to the card in ``reader_name``."""
    from smartcard.System import readers

    def attempt() -> Any:
        for reader in readers():
            if str(reader) == reader_name:
                conn = reader.createConnection()
                try:
                    conn.connect()
                except Exception:
                    close(conn)
                    raise
                return conn
        return None

    return wait_for(f"a card in {reader_name!r}", attempt, timeout=timeout, interval=0.2)


def transmit(conn: Any, command: bytes) -> bytes:
    data, sw1, sw2 = conn.transmit(list(command))
    return bytes(data) + bytes([sw1, sw2])


def close(conn: Any) -> None:
    """Disconnect and release the PC/SC context now. pyscard would otherwise
    release it in ``__del__``, possibly after pcscd is gone, and complain."""
    inner = getattr(conn, "component", conn)
    for step in (inner.disconnect, getattr(inner, "release", None)):
        if step is None:
            continue
        try:
            step()
        except Exception:  # noqa: BLE001,S110 - best effort
            pass
    if getattr(inner, "hcontext", None) is not None:
        inner.hcontext = None  # pcscd is gone: nothing left to release
