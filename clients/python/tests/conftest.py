"""Fixtures: real `kairos serve` processes on free ports, and a server that never answers.

The server binary is built once per session with `swift build --product kairos` from the repository root (found
relative to this file); set KAIROS_BIN to use an existing binary instead (for example a release build).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

# `kairos_client` is imported from the source tree (no install needed).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kairos_test_support import (  # noqa: E402
    BUILD_TIMEOUT_S,
    REPO,
    ServerProcess,
    SilentServer,
)


@pytest.fixture(scope="session")
def kairos_binary() -> Path:
    override = os.environ.get("KAIROS_BIN")
    if override:
        path = Path(override)
        assert path.is_file(), "KAIROS_BIN=%s does not exist" % override
        return path
    if shutil.which("swift") is None:  # no toolchain here: use a binary built earlier, if there is one
        path = REPO / ".build" / "debug" / "kairos"
        if not path.is_file():
            pytest.fail("swift is not on PATH and %s does not exist: cannot start kairos serve" % path)
        return path
    try:
        subprocess.run(["swift", "build", "--product", "kairos"], cwd=str(REPO), check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    except subprocess.CalledProcessError as e:
        pytest.fail("swift build --product kairos failed:\n" + e.stdout.decode(errors="replace")[-4000:])
    out = subprocess.run(["swift", "build", "--product", "kairos", "--show-bin-path"], cwd=str(REPO), check=True,
                         stdout=subprocess.PIPE, timeout=120).stdout.decode().strip()
    path = Path(out) / "kairos"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def server(kairos_binary: Path) -> Iterator[ServerProcess]:
    """The shared server with the default model, for tests that do not disturb it."""
    s = ServerProcess(kairos_binary, [])
    yield s
    status = s.stop()
    assert status == 0, "kairos serve did not exit cleanly on SIGTERM (%s); log:\n%s" % (status, s.log_text())


@pytest.fixture
def start_server(kairos_binary: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Starts extra servers (with extra command-line options) that the test may stop or disturb."""
    started: List[ServerProcess] = []

    def start(*extra: str, models: Optional[Path] = None) -> ServerProcess:
        s = ServerProcess(kairos_binary, list(extra), models)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    s = SilentServer()
    yield s
    s.close()


