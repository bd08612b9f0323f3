"""`python -m kernelwright.runner.loopback CMD ARGS...`: bring up `lo`, then exec CMD.

ncu talks to the process it profiles over a local socket. A worker's private network namespace
starts with its loopback interface down, so ncu would fail there; with `lo` up the namespace
still reaches nothing beyond itself. Outside a private namespace `lo` is already up, or there is
no permission to touch it, and this does nothing.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import sys

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_up(interface: str = "lo") -> bool:
    """Set the interface up; False where that is not allowed or not needed."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("16sH", interface.encode(), 0)
            flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
            if flags & IFF_UP:
                return False
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", interface.encode(), flags | IFF_UP))
            return True
    except OSError:
        return False


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m kernelwright.runner.loopback CMD [ARGS...]")
    bring_up()
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
