"""KServe's storage initializer step, as its init container runs it: one fresh process that
downloads ``URI`` into ``DEST`` with KServe's own ``Storage.download`` and exits.

    python kserve_download.py s3://bucket/prefix DEST

Runs in a venv with ``kserve-storage`` (KServe's storage initializer since 0.15; made by
``time_to_serve.py``). S3 settings come from the environment, as in a pod:
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``S3_USE_HTTPS``.
"""

from __future__ import annotations

import sys

from kserve_storage import Storage

if __name__ == "__main__":
    Storage.download(sys.argv[1], sys.argv[2])
