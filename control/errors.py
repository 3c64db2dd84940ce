"""Errors that reach API clients: each carries a machine-readable code and an HTTP status."""

from __future__ import annotations

from typing import Any


class MedVisionError(Exception):
    """A failure the caller can act on.

    ``code`` is a stable snake_case identifier clients can branch on; ``status_code`` is the
    HTTP status the API answers with; ``detail`` carries extra machine-readable context
    (for example the offending file name).
    """

    status_code: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.detail = detail or {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the API sends for this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return body


class InvalidInputError(MedVisionError):
    """The request or an uploaded file is malformed or outside configured limits."""

    status_code = 400
    code = "invalid_input"


class PayloadTooLargeError(MedVisionError):
    """A file or request exceeds a configured size limit."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaError(MedVisionError):
    """An uploaded file is neither DICOM nor NIfTI, or of an unsupported kind."""

    status_code = 415
    code = "unsupported_media"


class AuthenticationError(MedVisionError):
    """Missing, expired, revoked or otherwise invalid credentials."""

    status_code = 401
    code = "not_authenticated"


class PermissionDeniedError(MedVisionError):
    """Valid credentials whose role may not do this."""

    status_code = 403
    code = "permission_denied"


class NotFoundError(MedVisionError):
    """The addressed resource does not exist (or is not visible to the caller)."""

    status_code = 404
    code = "not_found"


class ConflictError(MedVisionError):
    """The request conflicts with the current state (duplicate, concurrent edit, read-only)."""

    status_code = 409
    code = "conflict"


class RateLimitedError(MedVisionError):
    """Too many attempts; retry later."""

    status_code = 429
    code = "rate_limited"


class StorageIntegrityError(MedVisionError):
    """A stored object is missing or its bytes no longer match the recorded SHA-256."""

    status_code = 500
    code = "storage_integrity"


class ConfigurationError(MedVisionError):
    """One or more MEDVISION_* settings are invalid; the message lists each one."""

    status_code = 500
    code = "configuration_error"


class UINotBuiltError(MedVisionError):
    """The web workstation's files (MEDVISION_WEB_DIR) are missing: ``make web`` builds them."""

    status_code = 503
    code = "ui_not_built"
