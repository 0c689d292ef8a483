"""The remote protocol: JSON lines on the SSH channel's stdin and stdout.

One ``jobbridge remote-serve`` process serves one laptop command. Each message
is one JSON object on one line (ASCII: every non-ASCII character is escaped, so
data arrives byte-exact whatever the terminal or locale). docs/remote.md
documents every message; in short:

- the server speaks first, its hello: ``{"jobbridge": VERSION, "protocol": N,
  "home": PATH}``; a client refuses another protocol number (version mismatch);
- then the client sends requests ``{"op": NAME, ...}``, one at a time; the
  server answers each with events (``{"progress": ...}``, ``{"data": BASE64}``)
  and one final ``{"ok": VALUE}`` or ``{"error": LINE, "kind": KIND}``;
- the client closes stdin when done; the server exits.

PROTOCOL changes whenever a message changes meaning; adding an optional field
or a new operation does not change it.
"""

from __future__ import annotations

import json
from typing import IO, Any

PROTOCOL = 1

#: Error kinds of a final answer: bad input (exit 2), anything else that failed
#: (exit 1), ``wait`` ran out of time.
INPUT, FAILED, TIMEOUT = "input", "failed", "timeout"


class ProtocolError(Exception):
    """A line that is not a protocol message."""


def send(stream: IO[bytes], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n")
    stream.flush()


def receive(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next message; None at the end of the stream."""
    line = stream.readline()
    if not line:
        return None
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError(f"not a protocol message: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a protocol message: {line[:200]!r}")
    return message
