"""The shipped nginx configuration (deploy/nginx/), rendered for loopback and run by a test or a
benchmark.

Rendering changes only what a machine decides: the listening address, the replicas' addresses
(each keeps the shipped line's parameters) and the access log's path. Everything else is the
file a user installs. The wrapping `nginx.conf` stands in for /etc/nginx/nginx.conf with every
path under a temporary prefix, so nginx runs without touching the system's own.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "nginx"
SHIPPED_ACCESS_LOG = "/var/log/nginx/perception-llm.access.log"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )


def render_site(listen: str, replicas: list[str], access_log: Path) -> tuple[str, str]:
    """The shipped site and replica list with these addresses: (site, replicas)."""
    site = (DEPLOY / "perception-llm.conf").read_text()
    assert site.count("listen 8080;") == 1 and site.count(SHIPPED_ACCESS_LOG) == 1
    site = site.replace("listen 8080;", f"listen {listen};")
    site = site.replace(SHIPPED_ACCESS_LOG, str(access_log))
    shipped = (DEPLOY / "perception-llm.replicas").read_text()
    first = re.search(r"^server \S+( .*);$", shipped, re.MULTILINE)
    assert first is not None
    lines = [line for line in shipped.splitlines() if not line.startswith("server ")]
    lines += [f"server {address}{first.group(1)};" for address in replicas]
    return site, "\n".join(lines) + "\n"


def render(prefix: Path, listen: str, replicas: list[str]) -> Path:
    """A complete configuration under `prefix`; the path of its nginx.conf."""
    site, replica_list = render_site(listen, replicas, prefix / "access.log")
    (prefix / "conf.d").mkdir(parents=True, exist_ok=True)
    (prefix / "conf.d" / "perception-llm.conf").write_text(site)
    (prefix / "conf.d" / "perception-llm.replicas").write_text(replica_list)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / ('tmp-' + kind)};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root nginx's workers would switch to `nobody`, who cannot write in a private prefix.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n{temp}\n    include conf.d/perception-llm.conf;\n}}\n"
    )
    config = prefix / "nginx.conf"
    config.write_text(main)
    return config


def check(config: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a rendered configuration."""
    binary = nginx_binary()
    assert binary is not None
    return subprocess.run(
        [binary, "-t", "-p", str(config.parent), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_nginx(prefix: Path, replica_ports: list[int]) -> Iterator[tuple[str, Path]]:
    """nginx with the shipped configuration in front of these loopback replicas: (base URL,
    access log). Stopped gracefully (SIGQUIT) on exit."""
    binary = nginx_binary()
    assert binary is not None
    port = free_port()
    config = render(prefix, f"127.0.0.1:{port}", [f"127.0.0.1:{p}" for p in replica_ports])
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # ready when it accepts (nginx prints nothing when it has started)
            if process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {process.stderr.read() if process.stderr else ''}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", prefix / "access.log"
    finally:
        process.send_signal(3)  # SIGQUIT: graceful stop
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
