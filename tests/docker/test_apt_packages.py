"""One list of Debian packages (scripts/apt-packages.txt, issue 13): setup.sh, CI and both Dockerfiles
install from it and nothing else names a Debian package to install. That the list is complete is
proved by scripts/fresh-check.sh (the whole suite in a fresh Debian 12 root filesystem, run by CI)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from deploy import DOCKERFILES, REPO
from test_files import instructions

SCRIPTS = REPO / "scripts"
READER = SCRIPTS / "apt-packages.sh"
LIST = SCRIPTS / "apt-packages.txt"


def packages(*groups: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(READER), "list", *groups], capture_output=True, text=True, timeout=30)


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, FROM first."""
    out: list[list[tuple[str, str]]] = []
    for word, args in instructions(dockerfile):
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, args))
    return out


def installed_groups(stage: list[tuple[str, str]]) -> list[str]:
    """Groups a stage installs with the reader, which it must have copied in before."""
    groups, copied = [], False
    for word, args in stage:
        if word == "COPY" and {"scripts/apt-packages.sh", "scripts/apt-packages.txt"} <= set(shlex.split(args)):
            copied = True
        for match in re.finditer(r"apt-packages\.sh install ((?:[\w-]+ ?)+)", args if word == "RUN" else ""):
            assert copied, "RUN uses apt-packages.sh before COPYing it and its list"
            groups += match.group(1).split()
    return groups


def test_reader_lists_groups_and_refuses_unknown_ones() -> None:
    listed = packages("test")
    assert listed.returncode == 0, listed.stderr
    # The packages the RTSP camera and dashboard tests failed without on a fresh machine or rootfs.
    needed = {"chromium", "libatomic1", "g++", "python3-dev", "python3-gi", "gir1.2-gst-rtsp-server-1.0"}
    assert needed <= set(listed.stdout.split())
    assert "libglib2.0-0" not in listed.stdout.split(), "groups leak into each other"
    typo = packages("service", "tset")
    assert typo.returncode == 2 and "tset" in typo.stderr and not typo.stdout


def test_every_listed_line_names_a_package_and_a_known_group() -> None:
    groups = {"service", "venv", "python", "test", "check"}
    for line in LIST.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", words[0]), f"not a Debian package name: {line!r}"
            assert words[1:] and set(words[1:]) <= groups, f"no group, or an unknown one: {line!r}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_debian_packages_from_the_list(dockerfile: Path) -> None:
    runs = " ".join(args for word, args in instructions(dockerfile) if word == "RUN")
    assert "apt-get install" not in runs, f"{dockerfile.name} installs Debian packages outside scripts/apt-packages.txt"
    *build, final = stages(dockerfile)
    assert "service" in installed_groups(final), f"{dockerfile.name}: the image lacks the service's packages"
    for stage in [*build, final]:
        for group in installed_groups(stage):
            assert packages(group).returncode == 0, f"{dockerfile.name} installs unknown group {group}"
    if dockerfile.name == "Dockerfile.cuda":  # a bare CUDA base: Python and venv come from the list too
        assert "venv" in installed_groups(build[0]) and "python" in installed_groups(final)


def test_setup_installs_from_the_list_and_no_other_list_exists() -> None:
    setup = (SCRIPTS / "setup.sh").read_text()
    assert "apt-packages.sh install" in setup and "apt-get install" not in setup
    lists = []
    for top, dirs, files in os.walk(REPO):  # no git here: the fresh-rootfs check has none
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"artifacts", "data", "runs"}]
        lists += [str(Path(top, f).relative_to(REPO)) for f in files if re.search(r"apt[-_].*\.txt$", f, re.I)]
    assert lists == ["scripts/apt-packages.txt"], f"more than one list of Debian packages: {lists}"


def test_ci_runs_the_fresh_rootfs_check_and_scripts_fail_loudly() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/fresh-check.sh" in ci and "set -euo pipefail" in ci
    for script in sorted(SCRIPTS.glob("*.sh")):
        assert "set -euo pipefail" in script.read_text(), f"{script.name} goes on after a failed command"
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert syntax.returncode == 0, f"{script.name}: {syntax.stderr}"
