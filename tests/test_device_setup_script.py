"""scripts/device_setup.sh: sourced in the repository root, it puts a working `longmul` command on PATH
(the machine's own python3 with lib/ on PYTHONPATH) and checks the transformers version."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sourcing_gives_a_longmul_command():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # python3 = this one
    result = subprocess.run(
        ["bash", "-c", "source scripts/device_setup.sh && command -v longmul && longmul train --help"],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "transformers 5." in result.stdout and "/tmp/longmul-bin/longmul" in result.stdout
    assert "--recipe {sft,icot,aux}" in result.stdout
