"""Hostile .torrent files, defined once: the unit tests parse them, the hostile suite
feeds them to the real CLI. Each case: (id, bencoded bytes, the start of the error)."""
from __future__ import annotations

import fastbencode


def torrent(**info_changes) -> bytes:
    """A valid 40,000-byte single-file torrent with some info fields replaced."""
    info = {b"length": 40000, b"name": b"f.bin", b"piece length": 16384, b"pieces": b"\x00" * 60}
    info.update({k.replace("_", " ").encode(): v for k, v in info_changes.items()})
    return fastbencode.bencode({b"announce": b"tcp://127.0.0.1:1", b"info": info})


POW2 = "['info']['piece length'] must be a power of two from 16 KiB to 16 MiB, not"
HOSTILE = [
    ("truncated", torrent()[:-3], "not valid bencode: "),
    ("trailing", torrent() + b"junk", "not valid bencode: junk in stream"),
    ("not-a-dict", b"i3e", "top level must be dict, not int"),
    ("no-info", fastbencode.bencode({b"announce": b"x"}), "['info'] is missing"),
    ("dotdot", torrent(name=b".."), "['info']['name'] '..' is a directory reference"),
    ("empty", torrent(name=b""), "['info']['name'] is empty"),
    ("slash", torrent(name=b"a/b"), "['info']['name'] 'a/b' contains a path separator"),
    ("backslash", torrent(name=b"..\\x"), "['info']['name'] '..\\\\x' contains a path separator"),
    ("absolute", torrent(name=b"/etc/passwd"), "['info']['name'] '/etc/passwd' contains a path separator"),
    ("nul", torrent(name=b"a\x00b"), "['info']['name'] 'a\\x00b' contains a control character"),
    ("newline", torrent(name=b"a\nb"), "['info']['name'] 'a\\nb' contains a control character"),
    ("bell", torrent(name=b"bell\x07"), "['info']['name'] 'bell\\x07' contains a control character"),
    ("not-utf8", torrent(name=b"\xff"), "['info']['name'] is not UTF-8"),
    ("name-int", torrent(name=5), "['info']['name'] must be bytes, not int"),
    ("plen-1000", torrent(piece_length=1000), f"{POW2} 1000"),
    ("plen-8k", torrent(piece_length=8192), f"{POW2} 8192"),
    ("plen-32m", torrent(piece_length=2 ** 25), f"{POW2} {2 ** 25}"),
    ("pieces-short", torrent(pieces=b"\x00" * 59),
     "['info']['pieces'] is 59 bytes, expected 60 for 40000 bytes in 16384-byte pieces"),
    ("length-0", torrent(length=0), "['info']['length'] must be positive, not 0"),
    ("length-and-files", torrent(files=[]), "['info'] has both 'length' and 'files'"),
]


def multi(*paths: list, length: int = 1000, **info_changes) -> bytes:
    """A valid multi-file torrent, one ``length``-byte file per path list."""
    files = [{b"length": length, b"path": list(p)} for p in paths]
    total = length * len(paths)
    info = {b"files": files, b"name": b"folder", b"piece length": 16384,
            b"pieces": b"\x00" * (20 * max(1, -(-total // 16384)))}
    info.update({k.replace("_", " ").encode(): v for k, v in info_changes.items()})
    return fastbencode.bencode({b"announce": b"tcp://127.0.0.1:1", b"info": info})


F0, F1 = "['info']['files'][0]['path']", "['info']['files'][1]['path']"
HOSTILE_PATHS = [
    ("dotdot", multi([b"a", b"..", b"x"]), f"{F0} 'a/../x': the component '..' is a directory reference"),
    ("dot", multi([b".", b"x"]), f"{F0} './x': the component '.' is a directory reference"),
    ("absolute", multi([b"", b"etc", b"passwd"]), f"{F0} '/etc/passwd' is an absolute path"),
    ("absolute-component", multi([b"/etc/passwd"]), f"{F0} '/etc/passwd' is an absolute path"),
    ("separator", multi([b"a", b"b/c"]), f"{F0} 'a/b/c': the component 'b/c' contains a path separator"),
    ("backslash", multi([b"a", b"..\\x"]), f"{F0} 'a/..\\\\x': the component '..\\\\x' contains a path separator"),
    ("control", multi([b"a\nb"]), f"{F0} 'a\\nb': the component 'a\\nb' contains a control character"),
    ("empty-component", multi([b"a", b"", b"b"]), f"{F0} 'a//b': the component '' is empty"),
    ("empty-path", multi([]), f"{F0} is empty"),
    ("not-utf8", multi([b"a", b"\xff"]), f"{F0}[1] is not UTF-8"),
    ("duplicate", multi([b"a", b"b"], [b"a", b"b"]), f"{F1} 'a/b' is listed twice"),
    ("case-fold", multi([b"A", b"b"], [b"a", b"B"]), f"{F1} 'a/B' collides with 'A/b' when case is ignored"),
    ("file-then-folder", multi([b"a"], [b"a", b"b"]), f"{F1} 'a/b' is under 'a', which is a file"),
    ("folder-then-file", multi([b"a", b"b"], [b"a"]), f"{F1} 'a' is also a folder of 'a/b'"),
    ("negative-length", multi([b"a"], length=-1), "['info']['files'][0]['length'] must not be negative, not -1"),
    ("all-empty", multi([b"a"], length=0), "['info']['files'] are all empty; nothing to share"),
    ("no-files", multi(), "['info']['files'] is empty"),
]

