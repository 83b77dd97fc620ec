"""Refuse to serve files that differ from the export: every Python-backend model checks the
sha256 of each artifact in its version folder against its manifest.json at load.

Copied next to each model.py when a repository is built; standard library only.
"""

import hashlib
import json
import os

MANIFEST = "manifest.json"


class ArtifactError(RuntimeError):
    """A model file is missing, corrupt or changed since `polyrank export` wrote it."""


def verify_artifacts(version_dir: str) -> int:
    """Checks every artifact manifest.json lists; returns how many. Raises ArtifactError
    naming the first file that is missing or whose sha256 differs."""
    manifest_path = os.path.join(version_dir, MANIFEST)
    try:
        with open(manifest_path, encoding="utf-8") as stream:
            artifacts = json.load(stream)["artifacts"]
    except (OSError, ValueError, KeyError) as error:
        raise ArtifactError(f"cannot read the artifact list in {manifest_path} ({error}); re-export the model")
    for name, expected in sorted(artifacts.items()):
        path = os.path.join(version_dir, name)
        if not os.path.isfile(path):
            raise ArtifactError(f"{path} is listed in {MANIFEST} but missing; re-export the model")
        actual = sha256_of(path)
        if actual != expected:
            raise ArtifactError(
                f"{path} does not match {MANIFEST} (sha256 {actual[:16]}..., expected {expected[:16]}...): "
                "the file is corrupt or was changed; re-export the model"
            )
    return len(artifacts)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
