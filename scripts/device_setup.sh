# Prepare a borrowed GPU machine to run this repository; source it in the repository root there:
#
#     source scripts/device_setup.sh && python3 scripts/device_session.py --seconds 480 --out-dir "$OUT" ...
#
# That machine's image has torch but an older transformers than lib/longmul needs, and no network.
# Wheels carried in .whl/ (fetch them here first: `pip download --no-deps --only-binary=:all:
# --python-version 3.12 -d .whl transformers==5.24.0`) are installed into /tmp/site; lib/ goes on
# PYTHONPATH and a `longmul` command on PATH, so the recorded commands read `longmul train ...`.

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
fi
export PYTHONPATH="/tmp/site:$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p /tmp/longmul-bin
printf '#!/usr/bin/env python3\nimport sys\nfrom longmul.cli import main\nsys.exit(main())\n' > /tmp/longmul-bin/longmul
chmod +x /tmp/longmul-bin/longmul
export PATH="/tmp/longmul-bin:$PATH"
python3 - <<'PY' || return 1
import sys

import torch
import transformers
from packaging.version import Version

print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.cuda.is_available()}")
if Version(transformers.__version__) < Version("5.24"):
    sys.exit("device_setup: transformers >= 5.24 is needed; carry its wheel in .whl/ (see this script's header)")
PY
