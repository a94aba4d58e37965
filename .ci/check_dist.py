"""What the built sdist and wheel hold: ``python .ci/check_dist.py dist`` (run by ./run package).

Every file of the package in the source tree (code and data: the event schemas, and
whatever templates or documents later join them) must be in the wheel and the sdist;
the wheel holds nothing else but its metadata; both carry the version of
jupyter_token_cache/_version.py.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "jupyter_token_cache"


def source_files() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def main(dist: Path) -> None:
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / PACKAGE / "_version.py").read_text())
    assert version, "no __version__ in _version.py"
    wheels = list(dist.glob("*.whl"))
    sdists = list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist in {dist}"
    expected = source_files()

    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert f"\nVersion: {version[1]}\n" in wheel.read(metadata).decode(), "wheel version"
    missing = expected - names
    assert not missing, f"missing from the wheel: {sorted(missing)}"
    extra = {n for n in names - expected if ".dist-info/" not in n}
    assert not extra, f"in the wheel but not in the package: {sorted(extra)}"

    with tarfile.open(sdists[0]) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    missing = (expected | {"pyproject.toml", "README.md", "LICENSE"}) - members
    assert not missing, f"missing from the sdist: {sorted(missing)}"

    data = sorted(n for n in expected if not n.endswith(".py"))
    print(
        f"{wheels[0].name}: {len(expected)} package files, {len(data)} of them data "
        f"({', '.join(data)}); {sdists[0].name}: {len(members)} files; version {version[1]}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
