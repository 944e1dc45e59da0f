"""A PostgreSQL server for tests: AUGURY_TEST_POSTGRES_URL, or a throwaway cluster started
with the local `initdb`/`pg_ctl` in a temp folder on a free port (as the `postgres` user
when the tests run as root, since PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV_URL = "AUGURY_TEST_POSTGRES_URL"


def find_binary(name: str) -> str | None:
    """`name` on PATH or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(user: str | None, args: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *args] if user else args


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster, yield its SQLAlchemy URL, stop and delete it. Raises LookupError
    (the reason) when it cannot be started here."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise LookupError(f"no PostgreSQL server: set {ENV_URL} or install postgresql")
    user = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise LookupError("running as root and there is no 'postgres' user") from None
        user = owner.pw_name
    folder = Path(tempfile.mkdtemp(prefix="augury-pg-"))
    if user:
        shutil.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", _free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        for args in (
            [initdb, "-D", str(data), "-A", "trust", "-U", "augury", "--no-sync"],
            [pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(folder / "log"), "start"],
        ):
            subprocess.run(_as_user(user, args), check=True, capture_output=True, timeout=60)
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise LookupError(f"could not start a throwaway PostgreSQL: {exc}") from None
    try:
        yield f"postgresql+psycopg2://augury@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_user(user, [pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres_url() -> Iterator[str]:
    """The server to test against (LookupError with the reason when there is none)."""
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise LookupError("psycopg2 is not installed (pip install psycopg2-binary)") from None
    with throwaway_cluster() as url:
        yield url
