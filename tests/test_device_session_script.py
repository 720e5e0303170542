"""scripts/device_session.py: runs side by side, stops them at the deadline with SIGTERM, packs each
run's folder and log, leaves out files too large to come back, and reports a run that failed."""

import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_session.py"

# A stand-in for `longmul train`: makes its --out folder, then on SIGTERM writes its checkpoint and
# exits with 130, as the trainer does.
FAKE_RUN = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
(out / "checkpoint").mkdir(parents=True)
(out / "history.jsonl").write_text("{}\\n")
(out / "checkpoint" / "optimizer.safetensors").write_bytes(bytes(300_000))
(out / "model.safetensors").write_bytes(bytes(300_000))  # a finished model's weights come back whatever their size
(out / "snapshot").mkdir()
(out / "snapshot" / "model.safetensors").write_bytes(bytes(10))
def stop(*_):
    (out / "checkpoint" / "state.json").write_text("{}")
    print("checkpoint written", flush=True)
    sys.exit(130)
signal.signal(signal.SIGTERM, stop)
print("training", flush=True)
while True:
    time.sleep(0.1)
"""


def command(code: str, out: str) -> str:
    return shlex.join([sys.executable, "-c", code, "--out", out])


def run_session(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, check=False, capture_output=True, text=True, timeout=120
    )


def test_runs_are_stopped_and_packed_without_large_files(tmp_path):
    packs = tmp_path / "packs"
    result = run_session(
        tmp_path, "--seconds", "6", "--max-checkpoint-mib", "0.1", "--out-dir", str(packs),
        command(FAKE_RUN, "runs/one"), command(FAKE_RUN, "runs/two"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in packs.iterdir()) == ["runs.tar.gz"]  # one pack: the tool returns at most 8 files
    with tarfile.open(packs / "runs.tar.gz") as tar:
        names = set(tar.getnames())
        log = tar.extractfile("runs/one/device.log").read().decode()
    assert {"runs/one/history.jsonl", "runs/one/checkpoint/state.json", "runs/one/device.log"} <= names
    assert "runs/two/history.jsonl" in names and "runs/one/model.safetensors" in names
    assert "runs/one/checkpoint/optimizer.safetensors" not in names and "runs/one/snapshot" not in names
    assert "training" in log and "checkpoint written" in log
    assert "left out of the pack" in result.stdout


def test_a_large_pack_comes_back_in_parts(tmp_path):
    packs = tmp_path / "packs"
    result = run_session(tmp_path, "--seconds", "6", "--part-mib", "0.001", "--out-dir", str(packs), command(FAKE_RUN, "runs/big"))
    assert result.returncode == 0, result.stdout + result.stderr
    parts = sorted(packs.iterdir())
    assert len(parts) > 1 and all(p.name.startswith("runs.tar.gz.part") for p in parts)
    joined = tmp_path / "joined.tar.gz"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        assert "runs/big/checkpoint/optimizer.safetensors" in tar.getnames()


def test_a_failed_run_is_reported_and_the_script_stops_early(tmp_path):
    packs = tmp_path / "packs"
    failing = command("print('no such recipe'); raise SystemExit(2)", "runs/bad")
    result = run_session(tmp_path, "--seconds", "600", "--out-dir", str(packs), failing)
    assert result.returncode == 1
    assert "FAILED runs/bad (exit 2)" in result.stdout and "no such recipe" in result.stdout
    assert (packs / "runs_bad.log").read_text().strip() == "no such recipe"  # no folder to pack: the log stays


def test_a_command_without_out_is_refused(tmp_path):
    result = run_session(tmp_path, "--seconds", "1", "--out-dir", str(tmp_path), "longmul train --recipe sft")
    assert result.returncode != 0 and "has no --out" in result.stderr
