"""Paths however they come (issue 24, items 5, 7-9) and the sorter's paths that a single filesystem never takes.

Folders walked once by inode, odd file names (not UTF-8, Rich markup) that
round-trip through csv, jsonl and the table, --resume by resolved path, the
journal of an older resnet-tl, and the copy path of a move across filesystems
(forced here by making the hard link fail, as it does across devices).
"""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import pytest
from sortkit import cli, image_hashes, photos, predictions, sha

from resnet_tl.inference.inputs import iter_inputs


def _sort(model, source, dest, mode="move", code=0) -> dict:
    res = cli(model, source, "--sort-into", dest, "--mode", mode, "--json")
    assert res.exit_code == code, res.output
    return json.loads(res.stdout)


# ----------------------------------------------------------------- item 5
def test_each_folder_is_walked_once_and_an_excluded_folder_never_by_any_path(tmp_path):
    photos(tmp_path / "p", ["a.png", "sub/b.png", "sorted/c.png"])
    (tmp_path / "p" / "loop").symlink_to(".")
    (tmp_path / "p" / "sub" / "up").symlink_to("..")
    (tmp_path / "alias").symlink_to("p")
    names = lambda items: sorted(Path(i).name for i in items)  # noqa: E731
    for inputs in ([tmp_path / "p"], [tmp_path / "alias"], [tmp_path / "p" / "**" / "*.png"], [tmp_path / "alias" / "**"]):
        found = list(iter_inputs([str(i) for i in inputs]))
        assert names(found) == ["a.png", "b.png", "c.png"], inputs  # the loops are entered once, if at all
    sorted_dir = [tmp_path / "alias" / "sorted"]  # the excluded folder, named through the link
    for inputs in ([tmp_path / "p"], [tmp_path / "p" / "**" / "*.png"], [tmp_path / "p" / "sorted" / "c.png"],
                   [tmp_path / "alias" / "loop" / "sorted"], [tmp_path / "p" / "*" / "*.png"]):
        assert "c.png" not in names(iter_inputs([str(i) for i in inputs], sorted_dir)), inputs
    # A file named, a folder and a glob naming it again: once, in input order.
    found = [str(i) for i in iter_inputs([str(tmp_path / "p" / "sub" / "b.png"), str(tmp_path / "p"), str(tmp_path / "p" / "*.png")])]
    assert names(found) == ["a.png", "b.png", "c.png"] and found[0].endswith("b.png")


# ----------------------------------------------------------------- item 7
def test_names_that_are_not_utf8_round_trip_through_csv_jsonl_resume_and_sort(onnx_model, tmp_path):
    odd = os.fsdecode(b"caf\xe9 \xff.png")  # Latin-1 bytes: not UTF-8
    src = tmp_path / "photos"
    photos(src, [odd, "plain.png", "z.png"])
    target = str(src / odd)
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"p.{fmt}"
        res = cli(onnx_model, src, "--output", out)
        assert res.exit_code == 0, res.output
        if fmt == "csv":
            with open(out, newline="", encoding="utf-8", errors="surrogateescape") as f:
                paths = [r["path"] for r in csv.DictReader(f)]
        else:
            paths = [json.loads(line)["path"] for line in out.read_text(encoding="ascii").splitlines()]
        assert target in paths and all(os.path.isfile(p) for p in paths)
        lines = out.read_bytes().splitlines(keepends=True)
        out.write_bytes(b"".join(lines[:2]))  # killed after the first file or two
        res = cli(onnx_model, src, "--output", out, "--resume")
        assert res.exit_code == 0, res.output
        assert out.read_bytes().count(b"\n") == 3 + (fmt == "csv")  # each file once, the odd one too
    res = cli(onnx_model, "photos", cwd=tmp_path)
    assert res.exit_code == 0 and "photos/caf\\xe9 \\xff.png" in res.stdout  # the table shows the bytes
    dest = tmp_path / "sorted"
    for _ in range(2):
        summary = _sort(onnx_model, src, dest)
    assert summary["already_done"] == 0 and summary["placed"] == {}
    rows = {r["path"]: r for r in predictions(dest)}
    assert (dest / rows[target]["dest"]).is_file()


# ----------------------------------------------------------------- item 8
def test_paths_with_brackets_are_text_not_markup(onnx_model, tmp_path):
    photos(tmp_path, ["photos [/b].png", "Holiday [from phone]/img.png", "[red]x[/red].png"])
    res = cli(onnx_model, "photos [/b].png", "Holiday [from phone]", "[red]x[/red].png", "--top-k", "1", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    for name in ("photos [/b].png", "Holiday [from phone]/img.png", "[red]x[/red].png"):
        assert name in res.stdout
    res = cli(onnx_model, "Holiday [from phone]", "--sort-into", "sorted [/b]", cwd=tmp_path)
    assert res.exit_code == 0 and "sorted [/b]: " in res.stderr, res.output
    res = cli(onnx_model, "Holiday [from phone]", "--output", "[/b] missing/p.csv", cwd=tmp_path)
    assert res.exit_code == 2 and "'[/b] missing/p.csv'" in res.stderr, res.output


# ----------------------------------------------------------------- item 9
def test_resume_knows_a_file_however_its_path_is_typed(onnx_model, tmp_path):
    src = tmp_path / "photos"
    photos(src, [f"{i}.png" for i in range(8)])
    (tmp_path / "alias").symlink_to("photos")
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"p.{fmt}"
        assert cli(onnx_model, "photos", "--output", out, cwd=tmp_path).exit_code == 0
        kept = out.read_bytes().splitlines(keepends=True)[:4]
        out.write_bytes(b"".join(kept))
        for typed in (src, tmp_path / "alias", f"{tmp_path}/./photos/../photos"):  # from the same folder
            res = cli(onnx_model, typed, "--output", out, "--resume", "--json", cwd=tmp_path)
            assert res.exit_code == 0, res.output
        paths = [r["path"] for r in csv.DictReader(out.open())] if fmt == "csv" else \
            [json.loads(x)["path"] for x in out.read_text().splitlines()]
        assert sorted(os.path.realpath(tmp_path / p) for p in paths) == sorted(str(p) for p in src.iterdir())


# ------------------------------------------------- the journal of an older resnet-tl
def test_a_version_1_journal_is_converted_and_its_unfinished_file_finished_inside_dir(onnx_model, tmp_path):
    src, dest = tmp_path / "photos", tmp_path / "sorted"
    originals = photos(src, ["a.png", "b.png", "c.png"])
    first = _sort(onnx_model, src / "a.png", dest, mode="copy")  # a.png sorted; then pretend an old run did it
    row = predictions(dest)[0]
    old_done = {"op": "done", "src": str(src / "a.png"), "row": {"path": row["path"], "top": [], "error": None,
                                                                  "detail": "", "dest": row["dest"]}}
    b_dest = f"{row['dest'].split('/')[0]}/b.png"
    old_begin = {"op": "begin", "src": str(src / "b.png"), "dst": f"elsewhere/{b_dest}", "mode": "copy",
                 "row": {"path": str(src / "b.png"), "top": [], "error": None, "detail": "", "dest": b_dest}}
    (dest / ".resnet-tl-journal.jsonl").write_text(json.dumps(old_done) + "\n" + json.dumps(old_begin) + "\n")
    (dest / b_dest).write_bytes(b"not b")  # where the killed old run would have put b.png: someone else's now
    summary = _sort(onnx_model, src, dest, mode="copy")
    assert first["placed"] and summary["recovered"] == 1 and summary["already_done"] == 2  # a: old done, b: recovered
    assert (dest / ".resnet-tl-journal.v1.jsonl").is_file()
    assert (dest / b_dest).read_bytes() == b"not b"
    (dest / b_dest).unlink()
    assert image_hashes(dest) == {h: 1 for h in originals} and image_hashes(src) == {h: 1 for h in originals}
    assert _sort(onnx_model, src, dest, mode="copy")["placed"] == {}


# ------------------------------------------------- across filesystems (no hard link)
@pytest.fixture
def no_hard_links(monkeypatch):
    """os.link fails as from another device (EXDEV: sources only; DIR's own temporary files link as usual),
    or everywhere, as on a DIR without hard links (EPERM: FAT, exFAT, some network shares)."""
    real = os.link

    def refuse(code):
        def link(src, dst, **kw):
            if code == errno.EXDEV and os.path.basename(src).startswith(".resnet-tl-"):
                return real(src, dst, **kw)
            raise OSError(code, os.strerror(code), str(src), None, str(dst))
        monkeypatch.setattr(os, "link", link)
    return refuse


def test_a_move_across_filesystems_copies_verifies_then_unlinks(onnx_model, tmp_path, no_hard_links):
    src, dest = tmp_path / "photos", tmp_path / "sorted"
    originals = photos(src, ["a.png", "b.png", "c.png"])
    (dest / "red").mkdir(parents=True)
    (dest / "red" / "a.png").write_bytes(b"someone else's")
    no_hard_links(errno.EXDEV)
    summary = _sort(onnx_model, src, dest)
    assert summary["failed"] == 0 and image_hashes(src) == {}
    assert (dest / "red" / "a.png").read_bytes() == b"someone else's"
    (dest / "red" / "a.png").unlink()
    assert image_hashes(dest) == {h: 1 for h in originals}
    assert not [p for p in dest.rglob(".*") if p.name != ".resnet-tl-journal.jsonl" and p.name != ".resnet-tl.lock"]
    no_hard_links(errno.EPERM)  # DIR without hard links: names claimed by exclusive creation instead
    more = photos(src, ["a.png", "d.png"], seed=5)
    summary = _sort(onnx_model, src, dest, mode="copy")
    assert sum(summary["placed"].values()) == 2 and image_hashes(dest) == {h: 1 for h in {**originals, **more}}


def test_a_source_changed_during_a_copy_is_kept_and_one_that_cannot_be_unlinked_stays(onnx_model, tmp_path, monkeypatch,
                                                                                     no_hard_links):
    from resnet_tl.inference import sort

    src, dest = tmp_path / "photos", tmp_path / "sorted"
    photos(src, ["a.png", "b.png", "c.png"])
    c = sha((src / "c.png").read_bytes())
    no_hard_links(errno.EXDEV)
    real_copy, real_unlink = sort.copy_to, sort.unlink_source

    def copy_while_written(source, tmp, fp):
        if source.endswith("a.png"):
            with open(source, "ab") as f:
                f.write(b"more")
        return real_copy(source, tmp, fp)

    def unlink_refused(source):
        if source.endswith("b.png"):  # root may remove anything; EACCES as a read-only folder gives it
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), source)
        real_unlink(source)

    monkeypatch.setattr(sort, "copy_to", copy_while_written)
    monkeypatch.setattr(sort, "unlink_source", unlink_refused)
    summary = _sort(onnx_model, src, dest, code=1)
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failures"]}
    assert reasons == {"a.png": "it changed after it was read for prediction (size or modification time)",
                       "b.png": "it could not be removed from its folder (Permission denied); left in place"}
    assert sorted(p.name for p in src.iterdir()) == ["a.png", "b.png"]  # both left where they were
    assert (src / "a.png").read_bytes().endswith(b"more")
    assert image_hashes(dest) == {c: 1}  # b.png's verified copy taken back, no partial copy of a.png
    assert not list(dest.rglob("*.partial")) and not list(dest.rglob("*.reason.txt"))
