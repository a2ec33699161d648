"""The backup file on its own: what survives a cut, a damaged byte and a hostile file.

The commands' round trips through real servers are in the backend's own backup tests;
here the file is written with the writer every backend uses and read back with the
reader ``restore`` uses, so each promise of the format is checked where it is made."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cachectl.backup.file_format import MARKER, Entry
from cachectl.backup.reader import BackupFile
from cachectl.backup.writer import BackupWriter, now_ms
from cachectl.errors import UsageError

CACHE = {"family": "redis", "server": "redis://127.0.0.1:1/0", "prefix": "app_"}


def _write(path: Path, chunks: int, per_chunk: int = 3, close: bool = True) -> BackupWriter:
    writer = BackupWriter(str(path), ["cachectl", "clear", "--yes"])
    keeper = writer.keeper(CACHE)
    for number in range(chunks):
        entries = [
            Entry(f"app_{number}_{at}".encode(), os.urandom(40), ttl_ms=1000 * at - 1)
            for at in range(per_chunk)
        ]
        keeper.keep(entries, now_ms())
    if close:
        writer.close()
    return writer


def _read(path: Path) -> tuple[list[Entry], BackupFile]:
    with BackupFile(str(path)) as backup:
        entries = [entry for chunk in backup.chunks() for entry in chunk.entries]
    return entries, backup


def test_entries_come_back_byte_for_byte_with_their_lifetimes(tmp_path: Path) -> None:
    path = tmp_path / "b.backup"
    writer = BackupWriter(str(path), ["cachectl", "delete", "k"])
    kept = [
        Entry(b"app_a", b"\x00\xff" * 100, ttl_ms=-1),
        Entry(b"app_\xffnot-utf8", b"", ttl_ms=5),
        Entry(b"", b"file bytes", ttl_ms=7, flags=16, extra=b"0123abcd"),
    ]
    writer.keeper(CACHE).keep(kept, 1234)
    writer.close()
    entries, backup = _read(path)
    assert entries == kept
    assert backup.contents.complete and backup.contents.trailer == {
        **backup.contents.trailer,
        "entries": 3,
        "chunks": 1,
    }
    assert backup.contents.caches[0]["prefix"] == "app_"
    assert backup.contents.head["command"] == ["cachectl", "delete", "k"]


def test_the_file_is_private_and_never_replaces_or_follows(tmp_path: Path) -> None:
    path = tmp_path / "b.backup"
    _write(path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        BackupWriter(str(path), []).check_can_create()
    target = tmp_path / "elsewhere"
    link = tmp_path / "link.backup"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        BackupWriter(str(link), []).check_can_create()
    with pytest.raises(OSError):  # created between the check and the first entry: still refused
        _write(link, 1)
    assert not target.exists()


def test_a_file_cut_short_keeps_every_whole_chunk(tmp_path: Path) -> None:
    """What SIGKILL leaves: no trailer, perhaps half a record at the end."""
    path = tmp_path / "b.backup"
    _write(path, 4, close=False)
    whole = path.read_bytes()
    path.write_bytes(whole + MARKER + b"ENTS\x00\x00\x10\x00")  # a record begun, never ended
    entries, backup = _read(path)
    assert len(entries) == 12
    assert not backup.contents.complete
    assert any("ends inside a record" in line for line in backup.contents.damaged)


def test_a_damaged_chunk_costs_only_its_own_entries(tmp_path: Path) -> None:
    path = tmp_path / "b.backup"
    _write(path, 5, per_chunk=10)
    data = bytearray(path.read_bytes())
    starts = [at for at in range(len(data)) if data.startswith(MARKER, at)]
    third_chunk = starts[2 + 2]  # HEAD, CACH, then chunks
    data[third_chunk + 30] ^= 0xFF
    path.write_bytes(bytes(data))
    entries, backup = _read(path)
    assert len(entries) == 40
    assert len(backup.contents.damaged) == 1
    assert "checksum" in backup.contents.damaged[0]
    assert backup.contents.complete


def test_a_damaged_length_does_not_swallow_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "b.backup"
    _write(path, 3, per_chunk=5)
    data = bytearray(path.read_bytes())
    starts = [at for at in range(len(data)) if data.startswith(MARKER, at)]
    length_at = starts[2] + len(MARKER) + 4
    data[length_at : length_at + 4] = (2**31).to_bytes(4, "big")  # past any record's size
    path.write_bytes(bytes(data))
    entries, backup = _read(path)
    assert len(entries) == 10
    assert backup.contents.damaged


def test_a_file_that_is_not_a_backup_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "not.backup"
    path.write_bytes(b"SET a b\r\n" * 10)
    with pytest.raises(UsageError, match="not a cachectl backup"):
        BackupFile(str(path))
    fifo = tmp_path / "fifo.backup"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="FIFO"):  # never waited on
        BackupFile(str(fifo))
    with pytest.raises(UsageError, match="cannot read the backup"):
        BackupFile(str(tmp_path / "missing.backup"))


def test_a_chunk_that_lies_about_its_entries_is_damaged_not_a_crash(tmp_path: Path) -> None:
    from cachectl.backup.file_format import ENTRIES, chunk_body, frame

    path = tmp_path / "b.backup"
    _write(path, 1)
    lying = chunk_body(0, 0, 1_000_000, b"\x00\x00\x00\x05ab")  # a million entries in 6 bytes
    with open(path, "ab") as stream:
        stream.write(frame(ENTRIES, lying))
    entries, backup = _read(path)
    assert len(entries) == 3
    assert any(
        "does not parse" in line or "past its end" in line for line in backup.contents.damaged
    )
