"""A throw-away PostgreSQL server for tests: ``initdb`` into a temporary directory, ``pg_ctl start``
on a free loopback port, trust authentication, removed at the end.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/N/bin``; ``make test``
installs it). PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user
the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A cluster in a temporary directory; :meth:`start` and :meth:`stop` (``-m immediate``: as a crash
    or a power cut would) can be called again, on the same port."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL server binaries (Debian package postgresql)")
        self.bindir = bindir
        as_root = os.geteuid() == 0
        self.user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        self.top = Path(tempfile.mkdtemp(prefix="cardlab-pg-"))
        self.data = self.top / "data"
        if as_root:
            os.chmod(self.top, 0o755)
            shutil.chown(self.top, "postgres")
        self.env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        self.port = 0
        made = subprocess.run(self.prefix + [str(bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                                             "--auth=trust", "-E", "UTF8", "--no-sync"],
                              capture_output=True, text=True, env=self.env)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stdout}{made.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        for attempt in range(3):  # a free port can be taken by another process before the server binds it
            port = self.port or _free_port()
            opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {self.top} -c fsync=off -c max_connections=100"
            started = subprocess.run(self.prefix + [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                                    "-l", str(self.top / "log"), "-w", "-t", "60", "start"],
                                     capture_output=True, text=True, env=self.env)
            if started.returncode == 0:
                self.port = port
                break
            log = (self.top / "log").read_text(errors="replace")[-3000:] if (self.top / "log").exists() else ""
            if attempt == 2:
                raise RuntimeError(f"PostgreSQL did not start: {started.stdout}{started.stderr}\n{log}")
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return self.url

    def stop(self) -> None:
        subprocess.run(self.prefix + [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                      "stop"], capture_output=True, env=self.env)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.top, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields ``postgresql://USER@127.0.0.1:PORT/postgres`` of a fresh server, removed afterwards."""
    server = PgServer()
    try:
        yield server.start()
    finally:
        server.remove()
