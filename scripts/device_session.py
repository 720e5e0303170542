"""Run several ``longmul train`` commands side by side on a borrowed GPU machine for a fixed time.

    python3 scripts/device_session.py --seconds 400 --out-dir "$OUT" \\
        "longmul train --recipe icot ... --out models/icot --resume" \\
        "longmul train --recipe aux ... --out models/aux --resume"

Each command runs in its own process (a 2-layer width-128 model keeps a GPU far from busy, so the
runs share it well). At the deadline every run still going gets SIGTERM, which makes it write a
resumable checkpoint and stop. Each run's ``--out`` folder (checkpoint, history, and the final model
if it finished) is then packed as ``<name>.tar.gz`` in ``--out-dir`` with the run's log, ready to be
unpacked over the same path here and resumed on CPU with the command in its ``state.json``. Files over
``--max-file-mib`` stay behind (the device tool returns files of at most 16 MiB): a width-768 run
brings back its history and state but not its weights.
A run that fails is reported at once (with the end of its log), and once no run is left the script
stops early, so that no device time is spent waiting.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from functools import partial
from pathlib import Path


def out_folder(command: str) -> Path:
    args = shlex.split(command)
    if "--out" not in args:
        raise SystemExit(f"device_session: command has no --out: {command}")
    return Path(args[args.index("--out") + 1])


def small_enough(member: tarfile.TarInfo, limit: float) -> tarfile.TarInfo | None:
    """Leave out files too large to come back from the device machine (a width-768 model's
    optimizer state, say), so that the run's history and state still do."""
    if member.size > limit:
        print(f"left out of the pack (too large, {member.size / 2**20:.1f} MiB): {member.name}", flush=True)
        return None
    return member


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commands", nargs="+", help="longmul train commands, one per run")
    parser.add_argument("--seconds", type=float, required=True, help="training time before SIGTERM")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the packed runs go")
    parser.add_argument("--max-file-mib", type=float, default=12, help="files larger than this stay behind")
    parser.add_argument("--grace", type=float, default=60, help="seconds to wait for checkpoints after SIGTERM")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    folders = [out_folder(c) for c in args.commands]
    procs, logs = [], []
    for command, folder in zip(args.commands, folders, strict=True):
        log = args.out_dir / f"{folder.name}.log"
        logs.append(log)
        with open(log, "w") as handle:
            procs.append(subprocess.Popen(shlex.split(command), stdout=handle, stderr=subprocess.STDOUT))
        print(f"started {folder}: {command}", flush=True)

    start = time.monotonic()
    reported: set[int] = set()
    while time.monotonic() - start < args.seconds and any(p.poll() is None for p in procs):
        time.sleep(5)
        for i, (folder, proc, log) in enumerate(zip(folders, procs, logs, strict=True)):
            if i not in reported and proc.poll() not in (None, 0):
                reported.add(i)
                print(f"FAILED {folder} (exit {proc.returncode}):\n{log.read_text()[-3000:]}", flush=True)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + args.grace
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    for folder, proc, log in zip(folders, procs, logs, strict=True):
        print(f"{folder}: exit {proc.returncode} after {time.monotonic() - start:.0f} s", flush=True)
        if not folder.is_dir():
            continue  # nothing to bring back but the log
        with tarfile.open(args.out_dir / f"{folder.name}.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=str(folder), filter=partial(small_enough, limit=args.max_file_mib * 2**20))
            tar.add(log, arcname=f"{folder}/device.log")
        log.unlink()
    # 130: stopped by the SIGTERM above, after writing its checkpoint
    return 0 if all(p.returncode in (0, 130) for p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
