"""Write the book's configuration for a build that links to our repository.

    .venv/bin/python scripts/book_config.py URL OUT [--branch main]

`_config.yml` has no repository: a build from it shows no repository or launch buttons, so a reader
is never sent to a repository that is not ours. `scripts/build_book.sh` calls this when
LONGMUL_REPOSITORY_URL is set and builds with `--config OUT`: the same settings plus the repository,
its button and Binder launch links. Paths Jupyter Book resolves against the configuration file
(`sphinx.local_extensions`) are made absolute, so OUT may live anywhere (e.g. in _build/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parents[1]
BINDERHUB = "https://mybinder.org"


def config_with_repository(config: dict, url: str, branch: str, root: Path) -> dict:
    """`config` (the parsed _config.yml) with the repository, its button and Binder launch links."""
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.hostname or parsed.path.strip("/").count("/") != 1:
        raise ValueError(f"repository URL {url!r} is not of the form https://host/owner/name")
    config = dict(config)
    config["repository"] = {"url": url, "branch": branch}
    config["html"] = {**config.get("html", {}), "use_repository_button": True}
    config["launch_buttons"] = {**config.get("launch_buttons", {}), "binderhub_url": BINDERHUB}
    sphinx = dict(config.get("sphinx", {}))
    if "local_extensions" in sphinx:
        sphinx["local_extensions"] = {
            name: str((root / path).resolve()) for name, path in sphinx["local_extensions"].items()
        }
    config["sphinx"] = sphinx
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the repository, https://host/owner/name")
    parser.add_argument("out", type=Path, help="where to write the configuration")
    parser.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    try:
        merged = config_with_repository(config, args.url, args.branch, ROOT)
    except ValueError as err:
        print(f"book_config: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
