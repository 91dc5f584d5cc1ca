"""Signed model bundles: an HMAC-SHA256 over the manifest and every file it lists.

A checksum in the manifest catches a damaged file, not a deliberate edit: whoever can change a file
can also change its checksum. Where a key is set (``NADKIT_BUNDLE_KEY``, or the service's
``bundle_key`` setting), saving a bundle writes ``signature.json`` beside the manifest, and loading
verifies it before anything else of the bundle is used: a bundle without a signature, or with one
that does not match, is refused. Without a key nothing changes; a signed bundle loads as before (its
signature is noted in the log, not checked).

What is signed: a fixed label, the manifest's bytes as they are on disk, then, for each file the
manifest lists (sorted by name), its name, its length and its bytes. The manifest names the files and
holds their checksums, so neither a file nor the list of files can change without the signature
failing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from nadkit.errors import BundleError, ConfigError
from nadkit.fileio import atomic_path

log = logging.getLogger(__name__)

KEY_ENV: Final = "NADKIT_BUNDLE_KEY"
SIGNATURE: Final = "signature.json"
ALGORITHM: Final = "hmac-sha256"
#: a key shorter than this is refused (it could be guessed)
MIN_KEY_LENGTH: Final = 16
_LABEL: Final = b"nadkit-bundle-signature-v1\0"
_MAX_SIGNATURE_BYTES: Final = 4096
_BLOCK: Final = 1 << 20


def bundle_key(key: str | bytes | None = None) -> bytes | None:
    """The signing key: ``key`` when given (an empty one: no key), else ``NADKIT_BUNDLE_KEY`` from
    the environment, else None. A key shorter than :data:`MIN_KEY_LENGTH` is a ConfigError."""
    if key is None:
        key = os.environ.get(KEY_ENV, "")
    if isinstance(key, str):
        key = key.strip().encode()
    if not key:
        return None
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"the bundle signing key ({KEY_ENV}) must be at least {MIN_KEY_LENGTH} characters long"
        )
    return key


def _digest(folder: Path, manifest: bytes, names: Iterable[str], key: bytes) -> str:
    mac = hmac.new(key, _LABEL, hashlib.sha256)
    mac.update(len(manifest).to_bytes(8, "big"))
    mac.update(manifest)
    for name in sorted(names):
        file = folder / name
        status = file.lstat()
        if not stat.S_ISREG(status.st_mode):
            raise BundleError(f"{file}: not a regular file (links and special files are refused)")
        mac.update(name.encode() + b"\0")
        mac.update(status.st_size.to_bytes(8, "big"))
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                mac.update(block)
    return mac.hexdigest()


def write_signature(folder: Path, names: Iterable[str], key: bytes) -> Path:
    """Sign the bundle in ``folder`` (its manifest and the files ``names``); returns the signature
    file, written atomically."""
    manifest = (folder / "manifest.json").read_bytes()
    value = _digest(folder, manifest, names, key)
    with atomic_path(folder / SIGNATURE, overwrite=True) as temporary:
        temporary.write_text(json.dumps({"algorithm": ALGORITHM, "value": value}) + "\n")
    return folder / SIGNATURE


def _read_signature(file: Path) -> str:
    try:
        status = file.lstat()
    except FileNotFoundError:
        raise BundleError(f"{file}: missing; the bundle is not signed and a signing key is set") from None
    if not stat.S_ISREG(status.st_mode) or status.st_size > _MAX_SIGNATURE_BYTES:
        raise BundleError(f"{file}: not a signature file")
    try:
        data = json.loads(file.read_bytes())
    except (ValueError, RecursionError):
        raise BundleError(f"{file}: not a signature file") from None
    value = data.get("value") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("algorithm") != ALGORITHM or not isinstance(value, str):
        raise BundleError(f"{file}: not a {ALGORITHM} signature")
    return value


def verify_signature(folder: Path, manifest: bytes, names: Iterable[str], key: bytes | None) -> None:
    """Check the bundle's signature with ``key`` (``manifest``: the manifest's bytes as read);
    without a key, only note whether the bundle is signed. A BundleError names what failed."""
    file = folder / SIGNATURE
    if key is None:
        if file.exists() or file.is_symlink():
            log.info("%s: signed bundle loaded without checking (no %s set)", folder, KEY_ENV)
        return
    expected = _read_signature(file)
    if not hmac.compare_digest(expected, _digest(folder, manifest, names, key)):
        raise BundleError(f"{file}: signature does not match (bundle altered, or signed with another key)")
    log.debug("%s: signature verified", folder)


def drop_signature(folder: Path) -> None:
    """Remove a signature an edit of the bundle has made stale (noted in the log)."""
    file = folder / SIGNATURE
    if file.exists() or file.is_symlink():
        file.unlink()
        log.warning(
            "%s: signature removed: the bundle changed and no %s is set to sign it again", folder, KEY_ENV
        )


__all__ = ["KEY_ENV", "SIGNATURE", "bundle_key", "drop_signature", "verify_signature", "write_signature"]
