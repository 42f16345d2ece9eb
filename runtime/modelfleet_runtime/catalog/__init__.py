"""A model registry on the storage users already have: ``modelfleet models push|list|show``.

A pushed version is a numbered folder (``s3://models/iris/3/``) holding ``model.onnx``, its
external-data files and, written last, ``modelfleet.json``: the manifest with each file's size
and sha256 and the model's signature (``storage/manifest.py``). The runtime checks every download
against it (``storage/layout.py``), so a version half uploaded or changed after its push is
never served. ``push.py`` writes versions, ``cli.py`` is the command.
"""
