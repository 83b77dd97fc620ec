"""Load-time checks every Python-backend model makes: its config names the parameters it
needs, and each artifact in its version folder has the sha256 its manifest.json lists
(refuse to serve files that differ from the export).

Copied next to each model.py when a repository is built; standard library only.
"""

import hashlib
import json
import os

MANIFEST = "manifest.json"


class ModelSetupError(RuntimeError):
    """A model cannot load: its config lacks a parameter, or an artifact check failed."""


class ArtifactError(ModelSetupError):
    """A model file is missing, corrupt or changed since `polyrank export` wrote it."""


def checked_setup(args: dict, model: str, required_parameters) -> tuple[dict, dict, str]:
    """(config, string parameters, version folder) of the model Triton is loading, from the
    `args` of its initialize(); ModelSetupError if a required parameter is missing or an
    artifact differs from the manifest."""
    config = json.loads(args["model_config"])
    parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    missing = [name for name in required_parameters if name not in parameters]
    if missing:
        raise ModelSetupError(f"{model} requires parameters {missing} in config.pbtxt, got {sorted(parameters)}")
    version_dir = os.path.join(args["model_repository"], args["model_version"])
    verify_artifacts(version_dir)
    return config, parameters, version_dir


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
