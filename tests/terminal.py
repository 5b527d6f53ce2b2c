"""Run the CLI in a real pseudo-terminal and read what a person would see.

rich decides from ``isatty()`` whether to draw its live display, hide the
cursor and use colour, so only a pty exercises that path; piped output (what
``subprocess.run(capture_output=True)`` gives) never does.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAPYARD = str(Path(sys.executable).with_name("tapyard"))
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def plain(screen: str) -> str:
    """``screen`` without escape sequences and carriage returns."""
    return _ANSI.sub("", screen)


@dataclass
class Terminal:
    """A command running with a pty as its stdin, stdout and stderr."""

    process: subprocess.Popen[bytes]
    master: int
    raw: bytearray = field(default_factory=bytearray)

    @property
    def screen(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def read(self, timeout: float = 0.1) -> bool:
        """Read what is available within ``timeout``; False at end of output."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its side
            return False
        if not chunk:
            return False
        self.raw.extend(chunk)
        return True

    def expect(self, pattern: str | Callable[[str], bool], timeout: float = 30.0) -> str:
        """Read until ``pattern`` (a regex on the plain screen, or a predicate) matches."""
        deadline = time.monotonic() + timeout
        check = pattern if callable(pattern) else (lambda s: re.search(pattern, s) is not None)
        while time.monotonic() < deadline:
            if check(plain(self.screen)):
                return self.screen
            if not self.read(0.05) and self.process.poll() is not None:
                break
        if check(plain(self.screen)):
            return self.screen
        raise AssertionError(f"{pattern!r} never appeared; the screen was:\n{plain(self.screen)[-3000:]}")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def interrupt(self, sig: int = signal.SIGINT) -> None:
        """A signal to the foreground process group, as the terminal sends Ctrl-C."""
        os.killpg(self.process.pid, sig)

    def wait(self, timeout: float = 60.0) -> int:
        """Drain the output until the command exits; its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = self.read(0.05)
            if self.process.poll() is not None and not alive:
                break
            if self.process.poll() is not None:
                while self.read(0.05) and select.select([self.master], [], [], 0)[0]:
                    pass
                break
        else:
            self.process.kill()
            raise AssertionError(f"still running after {timeout}s:\n{plain(self.screen)[-3000:]}")
        code = self.process.wait(5)
        return code


def spawn(
    args: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    columns: int = 120,
    rows: int = 40,
) -> Terminal:
    """Start ``args`` in a new session whose controlling terminal is a fresh pty."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
    for name in ("NO_COLOR", "FORCE_COLOR", "TAPYARD_QUIET", "CI"):
        full_env.pop(name, None)
    full_env.update(env or {})

    def _controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        list(args),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=full_env,
        start_new_session=True,
        preexec_fn=_controlling_tty,
    )
    os.close(slave)
    return Terminal(process=process, master=master)


def run(args: Sequence[str], timeout: float = 120.0, **kwargs: object) -> tuple[int, str]:
    """Run ``args`` to the end in a pty; (exit code, the raw screen)."""
    term = spawn(args, **kwargs)  # type: ignore[arg-type]
    try:
        code = term.wait(timeout)
    finally:
        os.close(term.master)
    return code, term.screen
