"""Start the `tritonserver` binary that the nvidia-pytriton wheel ships (no Docker) on loopback.

The wheel lays the binary out for pytriton's own launcher; serving a plain repository takes what
pytriton does for it: the Python-backend stub for this Python version copied beside the backend,
the wheel's bundled libraries on LD_LIBRARY_PATH, and this interpreter's bin/ first on PATH, so the
stub's Python imports from this environment (numpy, clipsr_runtime).
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def wheel_root() -> Path | None:
    """pytriton's `tritonserver/` folder, or None when nvidia-pytriton is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def unavailable_reason() -> str | None:
    """Why no local server can start here, or None."""
    root = wheel_root()
    if root is None:
        return "no tritonserver binary: pip install 'clipsr[serve]' (nvidia-pytriton ships it)"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not (root / "python_backend_stubs" / version / "triton_python_backend_stub").is_file():
        return f"the nvidia-pytriton wheel has no Python-backend stub for Python {version}"
    if ctypes.util.find_library(f"python{version}") is None:
        return (f"the Python-backend stub needs libpython{version}.so (Debian: apt-get install "
                f"libpython{version})")
    return None


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now on loopback (all held at once, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class LocalServer:
    """A running tritonserver; `stop()` (or the context manager) ends it and removes its scratch files."""

    process: subprocess.Popen
    http_port: int
    grpc_port: int
    log: Path
    scratch: Path
    _closed: bool = field(default=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _backends(root: Path, scratch: Path) -> Path:
    """A backend folder of the wheel's Python backend plus the stub for this Python version."""
    python = scratch / "backends" / "python"
    python.mkdir(parents=True)
    for item in (root / "backends" / "python").iterdir():
        if item.is_file():
            os.symlink(item, python / item.name)
    stub = root / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}"
    shutil.copy2(stub / "triton_python_backend_stub", python / "triton_python_backend_stub")
    return scratch / "backends"


def start(repository: Path, timeout: float = 120.0, extra_args: list[str] | None = None) -> LocalServer:
    """Start tritonserver on 127.0.0.1 with free ports; returns once every model is ready."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    root = wheel_root()
    scratch = Path(tempfile.mkdtemp(prefix="clipsr-triton-"))
    http_port, grpc_port, metrics_port = free_ports(3)
    libs = root.parent.parent / "nvidia_pytriton.libs"
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               LD_LIBRARY_PATH=os.pathsep.join(p for p in [str(libs), os.environ.get("LD_LIBRARY_PATH", "")] if p))
    command = [str(root / "bin" / "tritonserver"), f"--model-repository={repository}",
               f"--backend-directory={_backends(root, scratch)}", "--http-address=127.0.0.1",
               f"--http-port={http_port}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}",
               "--allow-metrics=false", f"--metrics-port={metrics_port}", "--exit-timeout-secs=5",
               *(extra_args or [])]
    log = scratch / "tritonserver.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL)
    server = LocalServer(process, http_port, grpc_port, log, scratch)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"tritonserver exited with status {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{server.http_url}/v2/health/ready", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.5)
    tail = server.log_tail()
    server.stop()
    raise RuntimeError(f"tritonserver was not ready after {timeout:.0f} s:\n{tail}")
