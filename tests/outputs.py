"""Output-path cases shared by the command tests: each must be refused with nothing touched.

``bad_output_cases(tmp)`` builds, under ``tmp``, the targets a command must refuse
before any work (a device, a symbolic link to a device, a directory standing at
the file name, a folder that cannot exist); ``tree_state`` records everything
under a folder (kind, size, content digest, link target) so a test can assert
that nothing was created, replaced or truncated.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, link target, size and digest of regular files."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            elif p.is_file():
                data = p.read_bytes()
                out[rel] = ("file", len(data), hashlib.sha256(data).hexdigest(), p.stat().st_mtime_ns)
            else:
                out[rel] = ("other",)
    return out


def bad_output_cases(tmp: Path) -> dict[str, str]:
    """Name -> path of an output target that must be refused (exit 2, one line, nothing touched)."""
    (tmp / "a_directory.json").mkdir()
    (tmp / "link_to_devnull.json").symlink_to(os.devnull)
    return {
        "dev-null": os.devnull,
        "symlink-to-device": str(tmp / "link_to_devnull.json"),
        "directory-at-target": str(tmp / "a_directory.json"),
        "proc": "/proc/x.json",
        "missing-folder": str(tmp / "no_such_folder" / "out.json"),  # an output file never creates a folder
    }


def device_intact() -> bool:
    """/dev/null is still a character device (a replaced device would be a regular file)."""
    import stat
    return stat.S_ISCHR(os.stat(os.devnull).st_mode)
