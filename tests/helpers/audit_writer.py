"""A child process that writes audit records as fast as it can and prints each id once acknowledged.

``python -m helpers.audit_writer STATE_DIR NAME COUNT KEY_PATH PREFIX [CHECKPOINT_EVERY]``: an id is
printed only after :meth:`AuditLog.request` returned, exactly as the front answers a client only then.
"""

from __future__ import annotations

import sys

from deploykit._front.audit import AuditLog


def main(state_dir: str, name: str, count: str, key_path: str, prefix: str, every: str = "100") -> None:
    log = AuditLog(state_dir, name=name, key_path=key_path or None, fsync="never", checkpoint_every=int(every))
    for i in range(int(count)):
        request_id = f"{prefix}-{i}"
        log.request(request_id=request_id, version="1", key_id="k1", method="POST", path="/predict", status=200,
                    input=b'{"instances": [{"tenure": %d}]}' % i, output=b'{"predictions": [0]}')
        print(request_id, flush=True)
    log.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
