"""What a base image's Python is, printed as one JSON line; run inside the image by :mod:`.base`::

    python3 -I /tmp/deploykit_probe.py

It uses only the standard library of whatever Python the image has (no deploykit there), so the file
is copied into a container of the image and run; it also runs here: ``python -m deploykit._docker.probe``.
"""

import json
import platform
import sys


def facts() -> dict:
    return {"python": "%d.%d" % sys.version_info[:2], "python_full": platform.python_version(),
            "libc": platform.libc_ver()[1], "machine": platform.machine()}


if __name__ == "__main__":
    print(json.dumps(facts()))
