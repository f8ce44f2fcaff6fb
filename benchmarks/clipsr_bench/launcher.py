"""Run one command and print, as JSON, its peak RSS and its launch -> output-written time.

A separate, small process on purpose: Linux counts a child's RSS before exec (the forked copy of its
parent) in its ru_maxrss, so measuring straight from the big benchmark process would report the
benchmark's own size. Standard library only, so this launcher stays a few MB.
Usage: python launcher.py OUTPUT_FILE COMMAND [ARGS...]"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(output: Path, command: list[str]) -> dict:
    output.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as err:
        launched_ns = time.time_ns()
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    if code != 0 or not output.is_file():
        return {"error": f"{Path(command[0]).name} exited {code}: {(lines or ['no output'])[-1]}"}
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "to_output_s": (output.stat().st_mtime_ns - launched_ns) / 1e9,
            "wall_s": wall}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2:])))
