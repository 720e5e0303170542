"""scripts/lab.sh opens the chapters in JupyterLab as notebooks on double-click.

The setting is JupyterLab's own (the document manager's default viewer per file type), carried by the
repository in jupyter/labconfig/default_setting_overrides.json and put on the configuration path by
scripts/lab.sh. A live server read it back when this was written (the settings API reported the
Jupytext notebook as the markdown default); these tests pin the pieces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_markdown_and_myst_open_as_jupytext_notebooks():
    overrides = json.loads((ROOT / "jupyter" / "labconfig" / "default_setting_overrides.json").read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}


def test_lab_sh_puts_the_repository_config_on_the_path_and_is_valid_bash():
    script = ROOT / "scripts" / "lab.sh"
    text = script.read_text()
    assert 'JUPYTER_CONFIG_PATH="$PWD/jupyter' in text and "jupyter lab" in text
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_the_jupytext_lab_extension_that_provides_the_viewer_is_installed():
    labextensions = Path(sys.prefix) / "share" / "jupyter" / "labextensions"
    assert (labextensions / "jupyterlab-jupytext" / "package.json").is_file(), f"no jupyterlab-jupytext in {labextensions}"
