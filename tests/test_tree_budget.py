"""scripts/tree_budget.py: the budget check counts what git tracks and names the largest paths; retiring a
run's checkpoint removes exactly its tensors and records a command that brings the same bytes back;
and this repository is within its budget with every restore record true."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("tree_budget", ROOT / "scripts" / "tree_budget.py")
tb = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tb)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",  # the user's settings (hooks, signing) must not change what a test sees
}


@pytest.fixture(autouse=True)
def git_identity(monkeypatch):
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)


def sh(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    sh(root, "init", "-q")
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    sh(root, "add", "-A")
    sh(root, "commit", "-q", "-m", "files")
    return root


def run_files(prefix: str, finished: bool = True) -> dict[str, bytes]:
    """A run folder as `longmul train` leaves it (small stand-in contents)."""
    files = {
        f"{prefix}/history.jsonl": b'{"kind": "train", "step": 1}\n',
        f"{prefix}/checkpoint/state.json": b'{"step": 1}\n',
        f"{prefix}/checkpoint/model.safetensors": b"m" * 300,
        f"{prefix}/checkpoint/optimizer.safetensors": b"o" * 600,
        f"{prefix}/checkpoint/extra.safetensors": b"e" * 50,
    }
    if finished:
        files[f"{prefix}/training.json"] = b'{"steps": 1}\n'
        files[f"{prefix}/model.safetensors"] = b"w" * 310
    return files


# --------------------------------------------------------------------------- check

names = st.lists(st.from_regex(r"[a-z]{1,3}(/[a-z]{1,3}){0,2}", fullmatch=True), min_size=1, max_size=8, unique=True)


@given(data=st.data())
def test_report_says_over_exactly_when_the_total_exceeds_the_budget(data):
    paths = data.draw(names)
    sizes = {p: data.draw(st.integers(0, 10**9)) for p in paths}
    budget = data.draw(st.integers(0, 10**10))
    top = data.draw(st.integers(1, 20))
    ok, text = tb.report(sizes, budget, top)
    assert ok == (sum(sizes.values()) <= budget)
    assert ("OVER" in text) != ok and (("bytes over" in text) != ok)
    listed = [line.split()[-1] for line in text.splitlines() if line.startswith("  ") and not line.endswith("/")]
    assert listed == [p for p, _ in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))][:top]
    assert sum(tb.folder_sizes(sizes).values()) == sum(sizes.values())


@settings(max_examples=15)
@given(sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=6), slack=st.integers(-3000, 3000))
def test_check_counts_tracked_files_only(tmp_path_factory, sizes, slack):
    root = make_repo(tmp_path_factory.mktemp("repo"), {f"d{i}/f{i}.bin": b"x" * n for i, n in enumerate(sizes)})
    (root / "untracked.bin").write_bytes(b"u" * 10_000)
    assert tb.tracked_sizes(root) == {f"d{i}/f{i}.bin": n for i, n in enumerate(sizes)}
    budget = max(0, sum(sizes) + slack)
    assert tb.main(["--root", str(root), "check", "--budget", str(budget)]) == (0 if sum(sizes) <= budget else 1)


def test_check_names_the_largest_paths(tmp_path, capsys):
    root = make_repo(tmp_path / "repo", {"big/a.bin": b"a" * 900, "small/b.txt": b"b" * 10})
    assert tb.main(["--root", str(root), "check", "--budget", "100"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("tracked files: 910 bytes") and "OVER the budget of 100 bytes" in out
    assert out.index("900  big/a.bin") < out.index("10  small/b.txt") and "900  big/" in out


# --------------------------------------------------------------------------- retire


def test_retire_removes_the_checkpoint_tensors_and_the_record_restores_them(tmp_path):
    files = run_files("runs/done")
    root = make_repo(tmp_path / "repo", files)
    head = sh(root, "rev-parse", "HEAD").strip()
    entry = tb.retire(root, "runs/done", commit=True)
    gone = [
        "runs/done/checkpoint/model.safetensors",
        "runs/done/checkpoint/optimizer.safetensors",
        "runs/done/checkpoint/extra.safetensors",
    ]
    assert [f["path"] for f in entry["files"]] == gone
    tracked = set(sh(root, "ls-files").split())
    assert not tracked & set(gone) and not any((root / p).exists() for p in gone)
    assert {"runs/done/checkpoint/state.json", "runs/done/model.safetensors", "runs/done/RESTORE.json"} <= tracked
    assert sh(root, "status", "--porcelain") == ""  # committed: removal and record
    record = json.loads((root / "runs/done/RESTORE.json").read_text())
    assert record["retired"] == [entry] and entry["commit"] == head
    assert entry["restore"] == f"git checkout {head} -- " + " ".join(gone)
    assert tb.check_records(root) == []
    subprocess.run(entry["restore"].split(), cwd=root, check=True)
    assert all((root / p).read_bytes() == files[p] for p in gone)
    assert any("tracked again" in note for note in tb.check_records(root))


def test_retire_weights_appends_to_the_record(tmp_path):
    root = make_repo(tmp_path / "repo", run_files("results/sweep/a"))
    first = tb.retire(root, "results/sweep/a", commit=True)
    second = tb.retire(root, "results/sweep/a", weights=True, commit=True)
    assert [f["path"] for f in second["files"]] == ["results/sweep/a/model.safetensors"]
    assert tb.read_record(root / "results/sweep/a/RESTORE.json")["retired"] == [first, second]
    assert first["commit"] != second["commit"] and tb.check_records(root) == []


def test_retire_without_commit_stages_it(tmp_path):
    root = make_repo(tmp_path / "repo", run_files("runs/done"))
    tb.retire(root, "runs/done")
    staged = sh(root, "diff", "--cached", "--name-status").splitlines()
    assert "A\truns/done/RESTORE.json" in staged and "D\truns/done/checkpoint/optimizer.safetensors" in staged


@pytest.mark.parametrize(
    ("files", "run_dir", "options", "message"),
    [
        (run_files("runs/going", finished=False), "runs/going", {}, "no training.json"),
        (run_files("models/sft"), "models/sft", {"weights": True}, "shipped models' weights stay"),
        (run_files("runs/done"), "runs/nope", {}, "no such run folder"),
        (run_files("runs/done"), "../", {}, "not inside the repository"),
        ({"runs/bare/training.json": b"{}", "runs/bare/history.jsonl": b""}, "runs/bare", {}, "nothing to retire"),
    ],
)
def test_retire_refuses(tmp_path, files, run_dir, options, message):
    root = make_repo(tmp_path / "repo", files)
    with pytest.raises(tb.BudgetError, match=message):
        tb.retire(root, run_dir, **options)
    assert sh(root, "status", "--porcelain") == ""  # nothing removed, nothing written


def test_a_stopped_run_needs_stopped(tmp_path):
    root = make_repo(tmp_path / "repo", run_files("runs/stopped", finished=False))
    entry = tb.retire(root, "runs/stopped", stopped=True, commit=True)
    assert len(entry["files"]) == 3 and (root / "runs/stopped/checkpoint/state.json").is_file()


@pytest.mark.parametrize("staged", [False, True])
def test_retire_refuses_uncommitted_bytes(tmp_path, staged):
    root = make_repo(tmp_path / "repo", run_files("runs/done"))
    (root / "runs/done/checkpoint/model.safetensors").write_bytes(b"changed")
    if staged:
        sh(root, "add", "runs/done/checkpoint/model.safetensors")
    with pytest.raises(tb.BudgetError, match="differs from HEAD: commit it first"):
        tb.retire(root, "runs/done")
    assert not (root / "runs/done/RESTORE.json").exists()


def test_main_says_a_refusal_in_one_line(tmp_path, capsys):
    root = make_repo(tmp_path / "repo", run_files("runs/going", finished=False))
    assert tb.main(["--root", str(root), "retire", "runs/going"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tree_budget: runs/going has no training.json") and "\n" not in err


# --------------------------------------------------------------------------- records


def retired_repo(tmp_path) -> Path:
    root = make_repo(tmp_path / "repo", run_files("runs/done"))
    tb.retire(root, "runs/done", commit=True)
    return root


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["retired"][0]["files"][0].update(blob="0" * 40), "does not hold"),
        (lambda r: r["retired"][0]["files"][0].update(path="runs/done/other.bin"), "is not `git checkout"),
        (lambda r: r["retired"][0].update(commit="abc"), "full 40-hex commit"),
        (lambda r: r.update(retired=[]), "non-empty 'retired'"),
        (lambda r: r["retired"][0].update(files=[{"path": "x"}]), "list of {path, bytes, blob}"),
    ],
)
def test_a_wrong_record_fails_the_check(tmp_path, capsys, edit, message):
    root = retired_repo(tmp_path)
    path = root / "runs/done/RESTORE.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    with pytest.raises(tb.BudgetError, match=message):
        tb.check_records(root)
    assert tb.main(["--root", str(root), "check"]) == 2
    assert "runs/done/RESTORE.json" in capsys.readouterr().err


def test_a_depth_1_clone_notes_the_commits_it_lacks(tmp_path, capsys):
    root = retired_repo(tmp_path)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{root}", str(clone)], check=True)
    assert tb.main(["--root", str(clone), "check"]) == 0
    assert "is not in this clone" in capsys.readouterr().out


# --------------------------------------------------------------------------- this repository


def test_this_repository_is_within_its_budget():
    ok, text = tb.report(tb.tracked_sizes(ROOT), tb.BUDGET_BYTES)
    assert ok, text


def test_this_repository_restore_records_hold():
    tb.check_records(ROOT)  # raises on a record whose commit does not hold what it names
