"""Real redis-server, gunicorn and nginx for the deploy tests, each on a free loopback port in a temp dir.

Each helper starts one process in its own session and stops exactly that process. A missing program
skips its test, except under CI (``CI`` set), where it fails (:func:`processes.require`).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from processes import ROOT, free_port, port_open, require, stop_process, wait_until
from voice_channel.extras import install_hint

NGINX_SITE = ROOT / "deploy" / "nginx" / "voice-channel.conf"


def need_module(name: str, extra: str) -> Any:
    """Import ``name`` for a test module: a missing extra skips it, except under CI, where it fails."""
    try:
        return importlib.import_module(name)
    except ImportError:
        reason = f"{name} is not installed ({install_hint(extra)})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the deploy tier must run)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def find_program(name: str) -> str:
    """The path of ``name`` (also looked up in sbin directories, where Debian puts nginx)."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in ("/usr/sbin", "/sbin") if (Path(d) / name).is_file()), None
    )
    require(found is not None, f"{name} is not installed (Debian: apt-get install {name})")
    assert found is not None
    return found


@dataclass
class RedisServer:
    """redis-server on a free loopback port, nothing persisted; can be stopped and started again."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        program = find_program("redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                program,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(lambda: port_open(self.port), timeout=20, what="redis-server", process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@dataclass
class Gunicorn:
    """``gunicorn -c deploy/gunicorn.conf.py 'voice_channel.app:app_from_environment()'`` as users run it."""

    directory: Path
    env: dict[str, str]
    workers: int = 2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "gunicorn.log"

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def start(self) -> Gunicorn:
        need_module("gunicorn", "scale")
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_CHANNEL_", "ELEVENLABS_"))}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            {
                "VOICE_CHANNEL_SERVER__PORT": str(self.port),
                "VOICE_CHANNEL_SERVER__WORKERS": str(self.workers),
                "VOICE_CHANNEL_LOG_FORMAT": "json",
                **self.env,
            }
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "deploy" / "gunicorn.conf.py"),
                "--access-logfile",
                str(self.access_log),
                "--access-logformat",
                '%P "%r" %s',
                "voice_channel.app:app_from_environment()",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(lambda: len(self.worker_pids()) >= self.workers, timeout=60, what="gunicorn", process=self.process)
        wait_until(lambda: port_open(self.port), timeout=30, what="gunicorn", process=self.process)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """Workers booted so far, in order (from gunicorn's own log lines)."""
        return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.log_text())]

    def exited_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"Worker exiting \(pid: (\d+)\)", self.log_text())]

    def events(self, name: str) -> list[dict]:
        import json

        found = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=60)
            self.process = None


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and localhost, made by openssl; (cert, key)."""
    openssl = find_program("openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def client_tls(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def tls_session(cert: Path) -> aiohttp.ClientSession:
    """A client session for nginx's TLS port whose closed connections are really gone when it closes.

    nginx does not always finish the TLS shutdown before the test's loop ends; without
    ``enable_cleanup_closed`` asyncio then leaks the socket under it (an unraisable ResourceWarning).
    """
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls(cert), enable_cleanup_closed=True))


@dataclass
class Nginx:
    """nginx running ``deploy/nginx/voice-channel.conf``: its ``# test:`` lines pointed at this test's servers."""

    directory: Path
    upstreams: list[int]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def render(self, cert: Path, key: Path) -> Path:
        site = NGINX_SITE.read_text()
        replacements = {
            "upstream": "\n".join(f"    server 127.0.0.1:{port} max_fails=0;" for port in self.upstreams),
            "listen": f"    listen 127.0.0.1:{self.port} ssl;",
            "certificate": f"    ssl_certificate     {cert};",
            "key": f"    ssl_certificate_key {key};",
        }
        for mark, line in replacements.items():
            pattern = re.compile(rf"^.*# test: {mark}$", re.MULTILINE)
            assert len(pattern.findall(site)) == 1, f"{NGINX_SITE} lost its '# test: {mark}' line"
            site = pattern.sub(lambda _m, line=line: line, site)
        temp = self.directory / "temp"
        temp.mkdir(parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers would switch to nobody otherwise
        main = f"""{user}worker_processes 1;
daemon off;
pid {self.directory / "nginx.pid"};
error_log {self.directory / "error.log"} info;
events {{ worker_connections 1024; }}
http {{
    access_log {self.directory / "access.log"};
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
{site}
}}
"""
        conf = self.directory / "nginx.conf"
        conf.write_text(main)
        return conf

    def start(self, cert: Path, key: Path) -> Nginx:
        program = find_program("nginx")
        conf = self.render(cert, key)
        test = subprocess.run(
            [program, "-t", "-p", str(self.directory), "-c", str(conf), "-e", "stderr"], capture_output=True, text=True
        )
        assert test.returncode == 0, f"nginx -t refused the configuration:\n{test.stderr}"
        log = (self.directory / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            [program, "-p", str(self.directory), "-c", str(conf), "-e", str(self.directory / "error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(lambda: port_open(self.port), timeout=20, what="nginx", process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            # SIGQUIT is nginx's graceful stop; stop_process follows with SIGKILL if it hangs.
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                stop_process(self.process)
            self.process = None


def wait_for(condition, *, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition of another process's output (a log line) that it does not announce otherwise."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
