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


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    bindir = pg_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries (Debian package postgresql)")
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    top = Path(tempfile.mkdtemp(prefix="cardlab-pg-"))
    data = top / "data"
    if as_root:
        os.chmod(top, 0o755)
        shutil.chown(top, "postgres")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    port = 0
    try:
        made = subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E",
                                        "UTF8", "--no-sync"], capture_output=True, text=True, env=env)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stdout}{made.stderr}")
        for attempt in range(3):  # a free port can be taken by another process before the server binds it
            port = _free_port()
            opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {top} -c fsync=off -c max_connections=100"
            started = subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                                               str(top / "log"), "-w", "-t", "60", "start"],
                                     capture_output=True, text=True, env=env)
            if started.returncode == 0:
                break
            log = (top / "log").read_text(errors="replace")[-3000:] if (top / "log").exists() else ""
            if attempt == 2:
                raise RuntimeError(f"PostgreSQL did not start: {started.stdout}{started.stderr}\n{log}")
        url = f"postgresql://{user}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, env=env)
        shutil.rmtree(top, ignore_errors=True)
