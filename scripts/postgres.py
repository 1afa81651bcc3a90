#!/usr/bin/env python3
"""A throwaway PostgreSQL server on localhost, for tests and CI (Debian's package, no service).

    python3 scripts/postgres.py start DIR   # prints the server's URL; the data lives in DIR
    python3 scripts/postgres.py stop DIR    # stops the server and removes DIR

The server listens on 127.0.0.1 at a free port, with its socket in DIR, and trusts local
connections (user ``optimlab``, database ``postgres``): it holds test data only. PostgreSQL refuses
to run as root, so as root the server runs as the ``postgres`` system user, which owns DIR.
Only the standard library is used: CI runs this before any virtual environment exists.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

#: The Debian package that provides initdb, pg_ctl and postgres.
PACKAGE = "postgresql"
USER = "optimlab"
SERVICE_USER = "postgres"  # the system user Debian's package creates


class PostgresError(RuntimeError):
    """The server cannot be started or stopped; the message says why and what to install."""


def bin_dir() -> Path:
    """The folder of initdb and pg_ctl: $OPTIMLAB_POSTGRES_BIN, the PATH, or the newest
    /usr/lib/postgresql/<version>/bin (Debian puts them there, off the PATH)."""
    if os.environ.get("OPTIMLAB_POSTGRES_BIN"):
        chosen = Path(os.environ["OPTIMLAB_POSTGRES_BIN"])
        if not (chosen / "initdb").exists():
            raise PostgresError(f"OPTIMLAB_POSTGRES_BIN={chosen} holds no initdb; expected PostgreSQL's bin folder "
                                f"(Debian package {PACKAGE}: /usr/lib/postgresql/<version>/bin)")
        return chosen
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise PostgresError(f"PostgreSQL is not installed (no initdb); install the Debian package {PACKAGE}")
    return versions[-1].parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the server's user: root hands it to the postgres system user."""
    if os.geteuid() != 0:
        return command
    try:
        import pwd

        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresError(f"running as root needs the {SERVICE_USER} system user "
                            f"(the Debian package {PACKAGE} creates it)") from None
    return ["runuser", "-u", SERVICE_USER, "--", *command]


def run(command: list[str], what: str) -> None:
    done = subprocess.run(as_server_user(command), capture_output=True, text=True)
    if done.returncode != 0:
        raise PostgresError(f"{what} failed: {(done.stderr or done.stdout).strip()[-1000:]}")


def start(folder: Path, attempts: int = 3) -> str:
    """Create a cluster in ``folder`` and start its server; the SQLAlchemy URL to reach it."""
    binaries, folder = bin_dir(), Path(folder).resolve()
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, SERVICE_USER, SERVICE_USER)
    run([str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
         "--no-sync"], "initdb")
    for attempt in range(attempts):  # the free port may be taken before the server binds it
        port = free_port()
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        try:
            run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options,
                 "-w", "-t", "60", "start"], "pg_ctl start")
        except PostgresError:
            if attempt == attempts - 1:
                log = folder / "server.log"
                raise PostgresError(f"the server did not start: {log.read_text()[-1000:] if log.exists() else ''}")
            continue
        (folder / "url").write_text(url := f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/postgres")
        return url
    raise AssertionError("unreachable")


def stop(folder: Path) -> None:
    """Stop the server of ``folder`` (if it runs) and remove the folder."""
    folder = Path(folder).resolve()
    data = folder / "data"
    if (data / "postmaster.pid").exists():
        run([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], "pg_ctl stop")
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        if argv[0] == "start":
            print(start(Path(argv[1])))
        else:
            stop(Path(argv[1]))
    except PostgresError as error:
        print(f"postgres.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
