"""`predict --sort-into --mode move` never loses a file (issue 24, items 1-6).

Each test reproduces a reported loss with real processes, real kills (the
RESNET_TL_FAULT hook: SIGKILL, or SIGSTOP to hold a process at an exact
point) and real files, then checks that every byte the user had is still
there exactly once. The model is a tiny ONNX file run by onnxruntime.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket

import pytest

from sortkit import cli, command, image_hashes, journal, photo, photos, predictions, run, sha, start_stopped


def _sort(model, source, dest, mode="move") -> dict:
    """One `predict --sort-into --json` in this process (for the tests that need no second process); its summary."""
    res = cli(model, source, "--sort-into", dest, "--mode", mode, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _moved_exactly_once(originals: dict, src, dest) -> None:
    """Every original is in DEST exactly once and nowhere in SRC; nothing else (no partial copy) is there."""
    assert image_hashes(src) == {}
    assert image_hashes(dest) == {h: 1 for h in originals}


# ----------------------------------------------------------------- kills
@pytest.mark.parametrize("mode,fault", [("move", "sort_begin:3"), ("move", "sort_copied:3"), ("move", "sort_unlinked:3"),
                                        ("copy", "sort_copied:2"), ("link", "sort_copied:2")])
def test_sigkill_at_any_step_then_rerun_loses_and_duplicates_nothing(onnx_model, tmp_path, mode, fault):
    """SIGKILL a real process after the journal's begin line, after the copy (or link), after the unlink;
    the re-run finishes that file, a third run does nothing new."""
    src, dest = tmp_path / "photos", tmp_path / "sorted"
    originals = photos(src, ["a.png", "b.png", "sub/a.png", "sub/c.png", "d.png"])
    (src / "broken.png").write_bytes(b"not a png")  # to _unreadable/, with its reason beside it
    originals[sha(b"not a png")] = b"not a png"
    cmd = command(onnx_model, src, dest=dest, mode=mode)
    killed = run(cmd, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if mode == "move":
        assert set(image_hashes(src) + image_hashes(dest)) == set(originals)  # killed, yet nothing lost
    rerun = run(cmd)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["recovered"] == 1
    if mode == "move":
        _moved_exactly_once(originals, src, dest)
    else:  # copies, or hard links to the sources
        assert image_hashes(src) == image_hashes(dest) == {h: 1 for h in originals}
    rows = predictions(dest)
    assert len(rows) == len({r["path"] for r in rows}) == 6 and all(os.path.lexists(dest / r["dest"]) for r in rows)
    assert "not_an_image" in (dest / "_unreadable" / "broken.png.reason.txt").read_text()
    assert not list(dest.rglob("*.partial"))
    third = run(cmd)
    assert third.returncode == 0 and json.loads(third.stdout)["placed"] == {}
    assert len(predictions(dest)) == 6


# ----------------------------------------------------------------- item 1
def test_a_second_sorter_into_the_same_dir_stops_and_a_foreign_file_is_never_taken_for_ours(onnx_model, tmp_path):
    """Item 1: run B stopped after journaling its first file, run A started meanwhile; a file that
    appears at B's chosen name (a writer that ignores the lock) is neither overwritten nor taken as B's copy."""
    dest = tmp_path / "sorted"
    b_files = photos(tmp_path / "b", ["0.png", "1.png", "2.png"], seed=1)
    a_files = photos(tmp_path / "a", ["0.png", "1.png"], seed=2)
    b = start_stopped(command(onnx_model, tmp_path / "b", dest=dest), "sort_begin:1")
    try:
        a = run(command(onnx_model, tmp_path / "a", dest=dest))
        assert a.returncode == 2, a.stderr
        lines = a.stderr.strip().splitlines()
        assert len(lines) == 1 and "another resnet-tl is sorting into it" in lines[0] and f"pid {b.pid}" in lines[0]
        assert image_hashes(tmp_path / "a") == {h: 1 for h in a_files}  # A touched nothing
        begun = journal(dest)[-1]
        assert begun["op"] == "begin"
        garbage = dest / begun["dst"]
        garbage.parent.mkdir(parents=True, exist_ok=True)
        garbage.write_bytes(b"garbage A")
    finally:
        os.kill(b.pid, signal.SIGCONT)
    out, err = b.communicate(timeout=120)
    assert b.returncode == 0, err
    assert garbage.read_bytes() == b"garbage A"
    renamed = [e for e in journal(dest) if e["op"] == "dest"]
    assert len(renamed) == 1 and renamed[0]["dst"] != begun["dst"]
    begins = [e["dst"] for e in journal(dest) if e["op"] == "begin"]
    assert len(begins) == len(set(begins)) == 3
    a = run(command(onnx_model, tmp_path / "a", dest=dest))
    assert a.returncode == 0, a.stderr
    garbage.unlink()
    assert image_hashes(tmp_path / "b") == {}
    _moved_exactly_once({**a_files, **b_files}, tmp_path / "a", dest)


# ----------------------------------------------------------------- item 2
def test_a_killed_run_resumed_from_another_folder_recovers_into_dir(onnx_model, tmp_path):
    """Item 2: killed after 'begin' (relative paths, from one folder), re-run from another folder whose
    ./sorted/<dest> holds an unrelated file: the file is recovered into DIR, the unrelated file untouched."""
    one, two = tmp_path / "one", tmp_path / "two"
    originals = photos(one / "photos", ["0.png", "1.png", "2.png"])
    killed = run(command(onnx_model, "photos", dest="sorted"), cwd=one, fault="sort_begin:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    begun = journal(one / "sorted")[-1]
    assert begun["op"] == "begin" and not os.path.isabs(begun["dst"]) and os.path.isabs(begun["src"])
    trap = two / "sorted" / begun["dst"]
    trap.parent.mkdir(parents=True)
    trap.write_bytes(b"unrelated")
    rerun = run(command(onnx_model, one / "photos", dest="../one/sorted"), cwd=two)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["recovered"] == 1
    assert trap.read_bytes() == b"unrelated" and [p.name for p in (two / "sorted").rglob("*") if p.is_file()] == [trap.name]
    _moved_exactly_once(originals, one / "photos", one / "sorted")


# ----------------------------------------------------------------- item 3
def test_a_file_still_being_written_keeps_every_byte(onnx_model, tmp_path):
    """Item 3: a camera-style writer has put part of a file when the sort runs. On the same filesystem the
    inode itself moves, so what the writer adds afterwards lands in DIR; a file that grows between being
    read and being moved is refused (exit 1), kept whole, and sorted by the next run."""
    src, dest = tmp_path / "photos", tmp_path / "sorted"
    whole = photo(tmp_path / "full.png", 7, size=24)
    others = photos(src, ["1.png", "2.png"])
    src.mkdir(exist_ok=True)
    with open(src / "0_camera.png", "wb") as writer:  # held open, as a camera does
        writer.write(whole[:300])
        writer.flush()
        done = run(command(onnx_model, src, dest=dest))
        assert done.returncode == 0, done.stderr
        writer.write(whole[300:])
    rows = {r["path"]: r for r in predictions(dest)}
    assert (dest / rows[str(src / "0_camera.png")]["dest"]).read_bytes() == whole
    _moved_exactly_once({**others, sha(whole): whole}, src, dest)

    growing = src / "0_growing.png"
    growing.write_bytes(whole[:300])
    held = start_stopped(command(onnx_model, src, dest=dest), "sort_begin:1")  # read (300 bytes), journaled, held
    with open(growing, "ab") as writer:
        writer.write(whole[300:])
    os.kill(held.pid, signal.SIGCONT)
    out, err = held.communicate(timeout=120)
    assert held.returncode == 1, err
    summary = json.loads(out)
    assert summary["failed"] == 1 and "changed after it was read" in summary["failures"][0]["reason"]
    assert growing.read_bytes() == whole  # kept, whole, and nothing of it in DIR
    assert sum(image_hashes(dest).values()) == 3
    again = _sort(onnx_model, src, dest)  # it changed since it failed: tried again
    assert sum(again["placed"].values()) == 1 and again["failed"] == 0
    assert image_hashes(src) == {} and image_hashes(dest)[sha(whole)] == 2  # the camera file and this one


# ----------------------------------------------------------------- item 4
def test_an_unmovable_file_fails_alone_and_never_blocks_dir(onnx_model, tmp_path):
    """Item 4: a socket and a FIFO named *.png, and (after a kill) a begun file replaced by a socket:
    each gets a 'failed' entry with its reason, the others are sorted, exit 1; the next run does not
    try them again and exits 0."""
    src, dest = tmp_path / "photos", tmp_path / "sorted"
    originals = photos(src, ["p0.png", "p1.png", "p2.png", "p3.png"])
    sockets = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    sockets[0].bind(str(src / "a_socket.png"))
    os.mkfifo(src / "fifo.png")
    # In name order: a_socket.png fails, fifo.png fails, p0.png is begun, and the process is killed.
    killed = run(command(onnx_model, src, dest=dest), fault="sort_begin:3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    entries = journal(dest)
    assert [e["op"] for e in entries[1:]] == ["begin", "failed", "begin", "failed", "begin"]
    assert entries[-1]["src"] == str(src / "p0.png")
    kept = (src / "p0.png").read_bytes()
    (src / "p0.png").unlink()
    sockets[1].bind(str(src / "p0.png"))  # the begun file can no longer be moved
    rerun = run(command(onnx_model, src, dest=dest))
    assert rerun.returncode == 1, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["recovered"] == 1 and summary["failed"] == 1 and summary["failed_before"] == 2
    assert summary["failures"] == [{"path": str(src / "p0.png"), "reason": "not a regular file (socket)"}]
    failed = {r["path"]: r for r in predictions(dest) if r["error"] == "not_sorted"}
    assert set(failed) == {str(src / n) for n in ("p0.png", "a_socket.png", "fifo.png")}
    assert all(r["dest"] == "" and r["detail"].startswith("not a regular file (") for r in failed.values())
    del originals[sha(kept)]
    _moved_exactly_once(originals, src, dest)
    third = run(command(onnx_model, src, dest=dest)[:-1])  # the summary line instead of --json
    assert third.returncode == 0, third.stderr
    assert len(third.stderr.strip().splitlines()) == 1 and "3 failed before and unchanged, not tried again" in third.stderr
    for s in sockets:
        s.close()


# ----------------------------------------------------------------- item 5
def test_dir_inside_the_source_is_never_searched_by_glob_symlink_or_loop(onnx_model, tmp_path):
    """Item 5: DIR inside the folder being sorted, reached by a glob ('photos/**/*.png'), through a
    symbolic link to the source, and with a link loop (loop -> .): three runs each, every file once."""
    originals = photos(tmp_path / "photos", ["0.png", "sub/1.png"])
    (tmp_path / "photos" / "loop").symlink_to(".")
    (tmp_path / "link").symlink_to("photos")
    dest = tmp_path / "photos" / "sorted"
    for source in (str(tmp_path / "photos" / "**" / "*.png"), tmp_path / "link", tmp_path / "photos"):
        for _ in range(3):
            _sort(onnx_model, source, dest)
            assert len([r for r in predictions(dest) if r["dest"]]) == 2  # (a glob that now matches nothing is a row too)
    assert sorted(p.name for p in dest.rglob("*.png")) == ["0.png", "1.png"]
    assert image_hashes(dest) == {h: 1 for h in originals}


# ----------------------------------------------------------------- item 6
def test_a_new_file_with_a_name_used_before_is_sorted(onnx_model, tmp_path):
    """Item 6: after a.png was moved, a new a.png is sorted too (copy mode: an edited file is sorted again,
    an untouched one is not, nor one restored with the same bytes and time under a new inode)."""
    src, dest = tmp_path / "photos", tmp_path / "sorted"
    first = photos(src, ["a.png"], seed=1)
    _sort(onnx_model, src, dest)
    second = photos(src, ["a.png"], seed=2)
    assert sum(_sort(onnx_model, src, dest)["placed"].values()) == 1
    _moved_exactly_once({**first, **second}, src, dest)

    copies = tmp_path / "copies"
    photos(src, ["b.png"], seed=3)
    _sort(onnx_model, src, copies, mode="copy")
    restored = src / "b.png.tmp"
    shutil.copy2(src / "b.png", restored)  # same bytes and mtime, another inode
    os.replace(restored, src / "b.png")
    same = _sort(onnx_model, src, copies, mode="copy")
    assert same["placed"] == {} and same["already_done"] == 1
    photos(src, ["b.png"], seed=4)
    edited = _sort(onnx_model, src, copies, mode="copy")
    assert sum(edited["placed"].values()) == 1 and len(list(copies.rglob("b*.png"))) == 2
