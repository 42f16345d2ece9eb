"""KServe's storage initializer step, as its init container runs it: one fresh process that
downloads ``URI`` into ``DEST`` with KServe's own ``Storage.download`` and exits.

    python kserve_download.py s3://bucket/prefix DEST

Runs in KServe's venv (``scripts/peers kserve``). S3 settings come from the environment, as in
a pod: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``S3_USE_HTTPS``.
"""

from __future__ import annotations

import sys

try:  # KServe 0.15 and later ship it as the kserve-storage distribution
    from kserve_storage import Storage
except ImportError:
    from kserve.storage import Storage

if __name__ == "__main__":
    Storage.download(sys.argv[1], sys.argv[2])
