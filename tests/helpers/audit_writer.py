"""A child process that writes audit records as fast as it can and prints each id once acknowledged.

``python -m helpers.audit_writer STATE_DIR NAME COUNT KEY_PATH PREFIX [CHECKPOINT_EVERY] [GO_FILE]``: an
id is printed only after :meth:`AuditLog.request` returned, exactly as the front answers a client only
then. With ``GO_FILE``, it prints ``ready`` and waits for that file to exist before writing, so that
several writers start together however loaded the machine is.
"""

from __future__ import annotations

import os
import sys
import time

from deploykit._front.audit import AuditLog


def main(state_dir: str, name: str, count: str, key_path: str, prefix: str, every: str = "100", go: str = "") -> None:
    log = AuditLog(state_dir, name=name, key_path=key_path or None, fsync="never", checkpoint_every=int(every))
    if go:
        print("ready", flush=True)
        while not os.path.exists(go):
            time.sleep(0.001)
    for i in range(int(count)):
        request_id = f"{prefix}-{i}"
        log.request(request_id=request_id, version="1", key_id="k1", method="POST", path="/predict", status=200,
                    input=b'{"instances": [{"tenure": %d}]}' % i, output=b'{"predictions": [0]}')
        print(request_id, flush=True)
    log.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
