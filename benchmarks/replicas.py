"""The replicated deployment on this machine: a Redis store, K app replicas and Debian's nginx
with the shipped ``deploy/nginx/frcnn.conf``, all on 127.0.0.1.

Used by ``tests/test_replicas.py`` and by ``benchmarks.class_load --replicas K`` (K replicas on
one machine: one Python interpreter per core instead of one for the whole class). Everything
runs unprivileged from a scratch folder and is stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from benchmarks.st_client import LocalApp, free_port

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
# The cookie secret every replica shares, so a session cookie one signed, another accepts.
COOKIE_SECRET = "the same on every replica"


def available() -> bool:
    """True when nginx and redis-server are installed (``.ci/run`` installs both)."""
    return os.path.exists(NGINX) and os.path.exists(REDIS)


def wait_port(port: int, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class RedisServer:
    """``redis-server`` on a free port, no persistence, in ``folder``; a context manager."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [REDIS, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        self.process = subprocess.Popen(
            [*command, "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def nginx_conf(folder: Path, listen: int, upstreams: list[int]) -> Path:
    """The shipped site config with these ports (one ``server`` line per upstream), in a main
    config that runs unprivileged from ``folder``."""
    site = (ROOT / "deploy" / "nginx" / "frcnn.conf").read_text()
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    lines = re.findall(r"^\s*server app\d+:8501[^\n]*\n", site, re.MULTILINE)
    if len(lines) < 1 or not upstreams:
        raise ValueError(f"no upstream servers to replace in frcnn.conf ({lines})")
    ours = "".join(re.sub(r"app\d+:8501", f"127.0.0.1:{port}", lines[0]) for port in upstreams)
    site = site.replace("".join(lines), ours)
    (folder / "frcnn.conf").write_text(site)
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {folder}/frcnn.conf;
}}
"""
    path = folder / "nginx.conf"
    path.write_text(main)
    return path


class Deployment:
    """Redis, ``names`` app replicas (``FRCNN_REPLICA`` = the name) and nginx in front of them;
    a context manager that stops all of it.

    Attributes:
        url: the proxy's address, what browsers open.
        replicas: name -> :class:`LocalApp`.
        store: the Redis store's url (``FRCNN_STORE`` of every replica).
    """

    def __init__(
        self,
        folder: Path,
        names: tuple[str, ...] = ("a", "b"),
        *,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        start_s: float = 300.0,
    ) -> None:
        self.folder = folder
        self.names = names
        self.args = list(args or [])
        self.env = dict(env or {})
        self.start_s = start_s
        self.redis = RedisServer(folder / "redis")
        self.replicas: dict[str, LocalApp] = {}
        self.proxy: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def store(self) -> str:
        return self.redis.url

    @property
    def pids(self) -> list[int]:
        """The replicas' process ids (each the root of its process tree)."""
        return [r.pid for r in self.replicas.values() if r.pid is not None]

    def start(self) -> Deployment:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self.redis.start()
            env = {
                "FRCNN_DEVICE": "cpu",
                "FRCNN_STORE": self.redis.url,
                "STREAMLIT_SERVER_COOKIE_SECRET": COOKIE_SECRET,
                **self.env,
            }
            self.replicas = {
                name: LocalApp(
                    log_path=self.folder / f"{name}.log",
                    args=self.args,
                    env={**env, "FRCNN_REPLICA": name},
                )
                for name in self.names
            }
            failures: list[BaseException] = []

            def start(app: LocalApp) -> None:
                try:
                    app.start(self.start_s)
                except BaseException as exc:  # reported below, after every start ended
                    failures.append(exc)

            starts = [threading.Thread(target=start, args=(r,)) for r in self.replicas.values()]
            for t in starts:
                t.start()
            for t in starts:
                t.join()
            if failures:
                raise failures[0]
            port = free_port()
            ports = [r.port for r in self.replicas.values()]
            conf = nginx_conf(self.folder, port, ports)
            check = subprocess.run(
                [NGINX, "-t", "-p", str(self.folder), "-c", str(conf)], capture_output=True
            )
            if check.returncode:
                raise RuntimeError(f"nginx -t: {check.stderr.decode(errors='replace')}")
            self.proxy = subprocess.Popen([NGINX, "-p", str(self.folder), "-c", str(conf)])
            wait_port(port)
            self.url = f"http://127.0.0.1:{port}"
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proxy, self.proxy = self.proxy, None
        if proxy is not None and proxy.poll() is None:
            proxy.terminate()
            proxy.wait(10)
        for replica in self.replicas.values():
            replica.stop()
        self.redis.stop()

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
