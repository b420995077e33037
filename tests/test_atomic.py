"""sagan_tut.atomic: the one way the package writes files others read."""
import json
import os

import pytest

from sagan_tut import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "sub" / "r.json"
    atomic.write_json({"a": 1}, path)  # makes the folder
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(path, "w") as fh:
            fh.write('{"a": 2, "b"')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_written_files_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "t.txt").read_text() == "x"
