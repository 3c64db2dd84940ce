"""Encryption of the pseudonym → original Study Instance UID link."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken

from control.errors import StorageIntegrityError


class LinkCipher:
    """Authenticated encryption (Fernet) with the link key from settings."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(key[:32].ljust(32, b"\0")))

    def encrypt(self, original_uid: str) -> bytes:
        """The ciphertext for ``original_uid``."""
        return self._fernet.encrypt(original_uid.encode())

    def decrypt(self, token: bytes) -> str:
        """The original UID; StorageIntegrityError when the key is wrong or data was altered."""
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise StorageIntegrityError(
                "the study link cannot be decrypted with the configured key",
                code="link_undecryptable",
            ) from None
