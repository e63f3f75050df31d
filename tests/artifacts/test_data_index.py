"""data/README.md indexes every committed file with its current checksum; every weights file
has a sha256sum manifest that verifies (checks in scripts/data_index.py)."""

import shutil
import subprocess
import sys

import pytest
from conftest import REPO, load_script

from course_lib.files import write_manifest

TABLE_HEAD = "| file | role | read by | produced by | sha256 |\n|---|---|---|---|---|\n"


@pytest.fixture(scope="module")
def index():
    return load_script("scripts/data_index.py")


def test_committed_data_folder_is_indexed_and_verified(index):
    """No unlisted file, no row without a file, no stale checksum, no unverified weights."""
    problems = index.check_index(REPO / "data")
    assert problems == [], "\n".join(problems)


def test_committed_safetensors_all_have_manifests(index):
    weights = sorted((REPO / "data").rglob("*.safetensors"))
    assert len(weights) >= 4  # 2 tiny CLIPs, the video encoder, the COREBA checkpoint
    assert all(w.with_suffix(".sha256").is_file() for w in weights)


def make_data(tmp_path, index):
    """A small data folder: weights with a manifest, a csv in a subfolder, and a current index."""
    data = tmp_path / "data"
    (data / "bench").mkdir(parents=True)
    (data / "w.safetensors").write_bytes(b"weights")
    write_manifest(data / "w.safetensors")
    (data / "bench" / "r.csv").write_text("a,b\n1,2\n")
    rows = "".join(
        f"| `{name}` | role | nobody | `make it` | `{'0' * 16}` |\n"
        for name in ("bench/r.csv", "w.safetensors", "w.sha256")
    )
    (data / "README.md").write_text("# data\n\n" + TABLE_HEAD + rows + "\nafter the table\n")
    text = (data / "README.md").read_text()
    (data / "README.md").write_text(index.rewrite_checksums(text, data))
    return data


def test_a_current_index_has_no_problems(tmp_path, index):
    data = make_data(tmp_path, index)
    assert index.check_index(data) == []
    assert [row.file for row in index.parse_index((data / "README.md").read_text())] == [
        "bench/r.csv",
        "w.safetensors",
        "w.sha256",
    ]


def test_unlisted_file_is_reported(tmp_path, index):
    data = make_data(tmp_path, index)
    (data / "bench" / "new.csv").write_text("x\n")
    (data / ".w.safetensors.abc.tmp").write_bytes(b"")  # an interrupted atomic write is ignored
    assert index.check_index(data) == [
        f"{data / 'bench' / 'new.csv'} has no row in {data / 'README.md'}"
    ]


def test_row_of_a_missing_file_is_reported(tmp_path, index):
    data = make_data(tmp_path, index)
    (data / "bench" / "r.csv").unlink()
    (problem,) = index.check_index(data)
    assert "bench/r.csv does not exist" in problem


def test_stale_checksum_is_reported_and_rewritten(tmp_path, index):
    data = make_data(tmp_path, index)
    (data / "bench" / "r.csv").write_text("a,b\n1,3\n")
    (problem,) = index.check_index(data)
    assert "sha256 of bench/r.csv" in problem
    before = (data / "README.md").read_text()
    after = index.rewrite_checksums(before, data)
    assert index.check_index(data) != [] and index.rewrite_checksums(after, data) == after
    # only the stale row's last cell changed
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][0].rsplit("|", 2)[0] == changed[0][1].rsplit("|", 2)[0]


def test_tampered_weights_and_missing_manifest_are_reported(tmp_path, index):
    data = make_data(tmp_path, index)
    (data / "w.safetensors").write_bytes(b"tampered")
    problems = index.check_index(data)
    assert any("sha256 of w.safetensors" in p for p in problems)
    assert any("corrupted or was modified" in p and "w.safetensors" in p for p in problems)
    (data / "w.sha256").unlink()
    problems = index.check_index(data)
    assert any("w.sha256 does not exist" in p for p in problems)
    assert any("manifest" in p and "w.sha256" in p and "missing" in p for p in problems)


def test_orphan_manifest_and_malformed_table_are_reported(tmp_path, index):
    data = make_data(tmp_path, index)
    shutil.copy(data / "w.sha256", data / "gone.sha256")
    assert any("gone.sha256 has no gone.safetensors" in p for p in index.check_index(data))
    (data / "README.md").write_text("# no table here\n")
    assert "no table" in index.check_index(data)[0]
    with pytest.raises(ValueError, match="cells"):
        index.parse_index(TABLE_HEAD + "| `a` | b |\n")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """scripts/update_data_index.py in a fresh interpreter (it imports its sibling module)."""
    script = REPO / "scripts" / "update_data_index.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_command_line_checks_and_refreshes(tmp_path, index):
    data = make_data(tmp_path, index)
    (data / "bench" / "r.csv").write_text("changed\n")
    before = (data / "README.md").read_text()
    checked = run_cli("--check", "--data-dir", str(data))
    assert checked.returncode == 1 and "sha256 of bench/r.csv" in checked.stderr
    assert (data / "README.md").read_text() == before  # --check changes nothing
    refreshed = run_cli("--data-dir", str(data))
    assert refreshed.returncode == 0, refreshed.stderr
    assert index.check_index(data) == []
    (data / "extra.txt").write_text("x")
    assert run_cli("--data-dir", str(data)).returncode == 1  # a missing row needs a hand edit
