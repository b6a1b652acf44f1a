"""Ed25519 keys for signing evidence bundles. CONTRACT:

    generate_keypair(prefix) -> KeyFiles      # PREFIX.key (PKCS#8 PEM, mode 0600) + PREFIX.pub (PEM)
    load_private_key(path) -> Ed25519PrivateKey
    load_public_key(path) -> Ed25519PublicKey
    fingerprint(public_key) -> str            # sha256 of the raw 32-byte key, hex
    sign(private_key, data) -> bytes; signature_ok(public_key, data, signature) -> bool

A missing, unreadable or non-Ed25519 key file is a UserError (exit 2) naming the file; a signature that
does not verify is a result (False), never an exception, so a verifier can name every problem it finds.
Private keys are written unencrypted with owner-only permissions: a CI secret store is the usual home.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tunesafe.errors import UserError
from tunesafe.types import sha256_hex

__all__ = ["KeyFiles", "fingerprint", "generate_keypair", "load_private_key", "load_public_key",
           "public_pem", "sign", "signature_ok"]


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path
    fingerprint: str


def generate_keypair(prefix: Path) -> KeyFiles:
    """Write a new key pair to PREFIX.key and PREFIX.pub. Never overwrites: losing a signing key silently
    would orphan every bundle it signed."""
    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise UserError("key file already exists", where=str(path),
                            fix="choose another --out prefix, or move the old key away first")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        private_path.parent.mkdir(parents=True, exist_ok=True)
        # created 0600 from the start, so the key is never readable by others, not even briefly
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        public_path.write_bytes(public_pem(key.public_key()))
    except OSError as exc:
        raise UserError(f"cannot write the key pair: {exc.strerror or exc}", where=str(private_path),
                        fix="pass a writable --out prefix") from None
    return KeyFiles(private_path, public_path, fingerprint(key.public_key()))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = _load(path, "private key", lambda data: serialization.load_pem_private_key(data, password=None),
                ".key")
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"not an Ed25519 private key ({type(key).__name__})", where=str(path),
                        fix="generate one with `tunesafe keys generate`")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = _load(path, "public key", serialization.load_pem_public_key, ".pub")
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"not an Ed25519 public key ({type(key).__name__})", where=str(path),
                        fix="pass the .pub file written by `tunesafe keys generate`")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_from_pem(data: bytes) -> Ed25519PublicKey | None:
    """A public key embedded in a bundle; None when it is not a valid Ed25519 key (a finding, not an
    input error: the bundle may have been tampered with)."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def signature_ok(key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _load(path: Path, what: str, parse: Callable[[bytes], object], suffix: str) -> object:
    """Read and parse a PEM key file; UserError naming the file when it cannot be read or parsed (an
    encrypted private key is refused too: bundles are signed unattended, in CI)."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the {what}: {exc.strerror or exc}", where=str(path),
                        fix="check the path and its permissions") from None
    try:
        return parse(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UserError(f"not an unencrypted PEM {what}", where=str(path),
                        fix=f"pass the {suffix} file written by `tunesafe keys generate`") from None
