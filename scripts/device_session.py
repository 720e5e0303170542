"""Run several ``longmul train`` commands side by side on a borrowed GPU machine for a fixed time.

    source scripts/device_setup.sh    # on that machine: its python3, our transformers, `longmul`
    python3 scripts/device_session.py --seconds 400 --out-dir "$OUT" \\
        "longmul train --recipe icot ... --out models/icot --resume" \\
        "longmul train --recipe aux ... --out models/aux --resume"

Each command runs in its own process (a 2-layer width-128 model keeps a GPU far from busy, so the
runs share it well). At the deadline every run still going gets SIGTERM, which makes it write a
resumable checkpoint and stop. Every run's ``--out`` folder (checkpoint, history, and the final model
if it finished; not its ``snapshot/``, which came from here) is then packed with the run's log (as
``device.log`` in the folder) into one ``runs.tar.gz`` in ``--out-dir``, to be unpacked here in the
repository root (``cat runs.tar.gz* | tar xz``) and resumed on CPU with the command in each
``state.json``.

The device tool brings back at most 8 files of 16 MiB each (64 MiB in all), hence one pack, split
into ``runs.tar.gz.part00``, ``part01``, … when over ``--part-mib``; and checkpoint files over
``--max-checkpoint-mib`` stay behind (a width-768 run's weights and optimizer state: such a run brings
back its history and state, and its final model if it finished, but cannot be resumed).

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


def keep_in_pack(member: tarfile.TarInfo, checkpoint_limit: float) -> tarfile.TarInfo | None:
    from longmul.saved import SNAPSHOT_DIR  # here, not at the top: it loads torch, which a failed start never needs

    parts = Path(member.name).parts
    if SNAPSHOT_DIR in parts:
        return None
    if "checkpoint" in parts and member.size > checkpoint_limit:
        print(f"left out of the pack ({member.size / 2**20:.1f} MiB): {member.name}", flush=True)
        return None
    return member


def pack_runs(
    folders: list[Path], logs: list[Path], out_dir: Path, checkpoint_limit: float, part_bytes: int
) -> list[Path]:
    """Pack run folders with their logs into ``out_dir/runs.tar.gz``, split into parts if too large."""
    pack = out_dir / "runs.tar.gz"
    with tarfile.open(pack, "w:gz") as tar:
        for folder, log in zip(folders, logs, strict=True):
            tar.add(folder, arcname=str(folder), filter=partial(keep_in_pack, checkpoint_limit=checkpoint_limit))
            tar.add(log, arcname=f"{folder}/device.log")
    if pack.stat().st_size <= part_bytes:
        return [pack]
    data = pack.read_bytes()
    pack.unlink()
    parts = []
    for i, offset in enumerate(range(0, len(data), part_bytes)):
        part = out_dir / f"{pack.name}.part{i:02d}"
        part.write_bytes(data[offset : offset + part_bytes])
        parts.append(part)
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commands", nargs="+", help="longmul train commands, one per run")
    parser.add_argument("--seconds", type=float, required=True, help="training time before SIGTERM")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the packed runs go")
    parser.add_argument("--max-checkpoint-mib", type=float, default=12, help="larger checkpoint files stay behind")
    parser.add_argument("--part-mib", type=float, default=15, help="packs larger than this are split")
    parser.add_argument("--grace", type=float, default=60, help="seconds to wait for checkpoints after SIGTERM")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    folders = [out_folder(c) for c in args.commands]
    procs, logs = [], []
    for command, folder in zip(args.commands, folders, strict=True):
        log = args.out_dir / f"{str(folder).replace('/', '_')}.log"
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
    for folder, proc in zip(folders, procs, strict=True):
        print(f"{folder}: exit {proc.returncode} after {time.monotonic() - start:.0f} s", flush=True)
    # A run that never made its folder leaves only its log, which stays beside the pack.
    packable = [(folder, log) for folder, log in zip(folders, logs, strict=True) if folder.is_dir()]
    if packable:
        packed = pack_runs(
            [f for f, _ in packable],
            [log for _, log in packable],
            args.out_dir,
            args.max_checkpoint_mib * 2**20,
            int(args.part_mib * 2**20),
        )
        print(f"packed {', '.join(str(f) for f, _ in packable)} as {', '.join(p.name for p in packed)}", flush=True)
        for _, log in packable:
            log.unlink()
    # 130: stopped by the SIGTERM above, after writing its checkpoint
    return 0 if all(p.returncode in (0, 130) for p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
