"""Settings read from MEDVISION_* environment variables, validated once at start-up."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from control.errors import ConfigurationError
from control.results.destinations import DicomDestinations

#: Where ``make web`` puts the workstation's production build: web/dist beside the package.
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "dist"


class Settings(BaseSettings):
    """Every tunable of the control plane. Defaults give the embedded single-host stack."""

    model_config = SettingsConfigDict(env_prefix="MEDVISION_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None
    storage_backend: Literal["filesystem", "s3"] | None = None
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_bucket: str = "medvision"
    s3_region: str = "us-east-1"
    s3_secure: bool = False
    redis_url: str | None = None
    triton_url: str = "127.0.0.1:8001"
    triton_required: bool = Field(default=True, description="/ready fails while Triton is down")
    triton_timeout_s: float = Field(default=300.0, gt=0, description="deadline of one inference")

    worker_enabled: bool = Field(default=True, description="`medvision serve` runs a job worker")
    worker_poll_s: float = Field(default=1.0, gt=0, le=60)
    job_max_attempts: int = Field(default=8, ge=1, le=100)
    job_backoff_s: float = Field(default=2.0, gt=0, description="first retry delay, doubling")
    job_backoff_max_s: float = Field(default=300.0, gt=0)
    job_lease_s: float = Field(default=120.0, ge=1, description="a dead worker's job is retaken")
    cache_ttl_s: int = Field(default=600, ge=1, description="rendered images and metadata")
    audit_checkpoint_s: float = Field(
        default=60.0, gt=0, description="a signed audit checkpoint at most this often"
    )

    route_chest_modalities: list[str] = ["CR", "DX"]
    route_chest_body_parts: list[str] = ["CHEST", "THORAX", "LUNG", "CHEST_LAT", ""]
    route_brain_body_parts: list[str] = ["BRAIN", "HEAD", "SKULL", ""]
    route_ct_head_body_parts: list[str] = ["HEAD", "BRAIN"]
    #: A head CT job starts this long after the series' last slice arrived, so a series
    #: sent slice by slice is read whole (Orthanc calls this a stable series).
    ct_series_settle_s: float = Field(default=3.0, ge=0, le=3600)

    secret_key: str | None = Field(default=None, description="JWT signing key (>= 32 chars)")
    deid_key: str | None = Field(default=None, description="key for pseudonymous UIDs")
    link_key: str | None = Field(default=None, description="key encrypting original UIDs")

    access_token_ttl_s: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(default=7 * 86_400, ge=60, le=90 * 86_400)
    login_max_failures: int = Field(default=5, ge=1, le=1000)
    login_window_s: int = Field(default=300, ge=1, le=86_400)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="addresses/networks whose X-Forwarded-For is believed (comma-separated)",
    )
    #: Strict-Transport-Security max-age in seconds, 0 = not sent. Set it (e.g. 31536000)
    #: only where every client reaches MedVision over TLS (a TLS-terminating proxy).
    hsts_max_age_s: int = Field(default=0, ge=0, le=2 * 365 * 86_400)

    max_request_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    max_file_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_files_per_request: int = Field(default=2000, ge=1)
    max_image_dimension: int = Field(default=16_384, ge=16)
    max_image_pixels: int = Field(default=16_384 * 16_384, ge=256)
    max_frames: int = Field(default=4096, ge=1)
    max_volume_voxels: int = Field(default=4 * 512 * 512 * 512, ge=4096)

    web_dir: Path = Field(
        default=DEFAULT_WEB_DIR, description="the workstation's built files, served at /"
    )

    # Results back to the PACS (docs/pacs-results.md): where signed-off SR/SEG objects go
    # (a JSON list; none configured = nothing is sent), the key encrypting the
    # re-identification records (default: derived from the secret key), the verifying
    # organisation named in the objects, the send job's attempts (backoff as for jobs), the
    # network timeout of one send, and an unverified preliminary CXR SR right after inference.
    dicom_destinations: DicomDestinations = Field(default=[])
    reid_key: str | None = Field(default=None, description="key encrypting re-id records")
    results_organization: str = Field(default="MedVision", min_length=1, max_length=64)
    result_send_max_attempts: int = Field(default=20, ge=1, le=1000)
    result_send_timeout_s: float = Field(default=30.0, gt=0, le=600)
    results_preliminary_sr: bool = False

    # DICOM listener (`medvision dicom listen`, docs/pacs-listener.md): its AE title, where it
    # listens, the calling AE titles allowed to associate, each mapped to the username of the
    # active integration (or admin) account its instances are stored and audited as (JSON,
    # e.g. {"ORTHANC": "pacs-bridge"}; empty = every association is rejected), the largest
    # PDU it receives and how many associations it serves at once.
    dicom_ae_title: str = Field(default="MEDVISION", min_length=1, max_length=16)
    dicom_host: str = "127.0.0.1"
    dicom_port: int = Field(default=11112, ge=1, le=65_535)
    dicom_allowed_aes: dict[str, str] = Field(default={})
    dicom_max_pdu: int = Field(default=1024 * 1024, ge=4096, le=64 * 1024 * 1024)
    dicom_max_associations: int = Field(default=10, ge=1, le=200)
    #: Ingest processes of the listener: batches stored side by side (see docs/pacs-listener.md).
    dicom_ingest_processes: int = Field(default=2, ge=1, le=16)

    @staticmethod
    def _dicom_ae_title_checked(value: str) -> str:
        """A DICOM AE title: 1-16 characters of printable ASCII without a backslash, leading
        and trailing spaces not significant (PS3.5 AE value representation)."""
        title = value.strip()
        if not 1 <= len(title) <= 16:
            raise ValueError(f"AE title {value!r} must have 1 to 16 characters")
        if "\\" in title or not all(32 <= ord(c) < 127 for c in title):
            raise ValueError(f"AE title {value!r} must be printable ASCII without a backslash")
        return title

    @field_validator("dicom_ae_title")
    @classmethod
    def _dicom_ae_title(cls, value: str) -> str:
        return cls._dicom_ae_title_checked(value)

    @field_validator("dicom_allowed_aes")
    @classmethod
    def _dicom_allowed_aes(cls, value: dict[str, str]) -> dict[str, str]:
        allowed: dict[str, str] = {}
        for title, username in value.items():
            if not username.strip():
                raise ValueError(f"calling AE {title!r} maps to an empty username")
            allowed[cls._dicom_ae_title_checked(title)] = username.strip()
        return allowed

    # Monitoring (docs/monitoring.md): /metrics (public: it shows no PHI, labels carry no ids
    # or names; MEDVISION_METRICS_PUBLIC=false makes it need an admin or mlops token), how
    # often the database-derived figures are recomputed for a scrape, the periodic audit
    # verification behind medvision_audit_chain_ok, the standalone worker's metrics port
    # (0 = none), and drift: where references are read, the window of recent findings per
    # model version, the fewest findings compared and the PSI above which a version drifts.
    metrics_enabled: bool = True
    metrics_public: bool = True
    metrics_refresh_s: float = Field(default=10.0, ge=0, le=3600)
    audit_verify_interval_s: float = Field(default=300.0, gt=0)
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    model_repository: Path = Path("model_repository")
    drift_window: int = Field(default=500, ge=10, le=100_000)
    drift_min_samples: int = Field(default=30, ge=1)
    drift_psi_threshold: float = Field(default=0.2, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    migrate_on_startup: bool = True

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        allowed = ("sqlite+aiosqlite://", "postgresql+psycopg://", "sqlite://", "postgresql://")
        if not value.startswith(allowed):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+psycopg:// "
                f"(got {value.split(':', 1)[0]!r})"
            )
        return value

    @field_validator("secret_key", "deid_key", "link_key", "reid_key")
    @classmethod
    def _key_length(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: object) -> object:
        from control.http.client_address import parse_networks

        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            items = [str(item).strip() for item in items if str(item).strip()]
            parse_networks(tuple(items))
        return items

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @model_validator(mode="after")
    def _s3_complete(self) -> Settings:
        if self.backend == "s3":
            missing = [
                f"MEDVISION_{name.upper()}"
                for name in ("s3_endpoint", "s3_access_key", "s3_secret_key")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"S3 storage needs {', '.join(missing)}")
        if self.max_file_bytes > self.max_request_bytes:
            raise ValueError("MEDVISION_MAX_FILE_BYTES must not exceed MEDVISION_MAX_REQUEST_BYTES")
        return self

    @property
    def backend(self) -> Literal["filesystem", "s3"]:
        """The object store in use: S3 when an endpoint is configured, unless set explicitly."""
        if self.storage_backend:
            return self.storage_backend
        return "s3" if self.s3_endpoint else "filesystem"

    @property
    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL; the default is a SQLite file under the data directory."""
        url = self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'medvision.db'}"
        if url.startswith("sqlite://"):
            url = "sqlite+aiosqlite://" + url[len("sqlite://") :]
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith("postgresql")

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "objects"

    def key(
        self, purpose: Literal["jwt", "deid", "link", "reid", "audit-hmac", "audit-signing"]
    ) -> bytes:
        """The key for one purpose: the explicit setting, else derived from the secret key.

        The audit keys (``audit-hmac`` chains the audit log, ``audit-signing`` is the Ed25519
        seed of its checkpoints) are always derived: they live where the secret key lives,
        never in the database (see control.domain.audit.chain.AuditKeys).
        """
        explicit = {
            "jwt": self.secret_key,
            "deid": self.deid_key,
            "link": self.link_key,
            "reid": self.reid_key,
        }.get(purpose)
        if explicit:
            return explicit.encode()
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        master = (self.secret_key or _embedded_secret(self.data_dir)).encode()
        if purpose == "jwt":
            return master
        info = f"medvision-{purpose}".encode()
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def _embedded_secret(data_dir: Path) -> str:
    """A random secret kept in the data directory, for the embedded single-host default."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def load_settings() -> Settings:
    """Read and validate the environment; one line per invalid MEDVISION_* value on error."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"MEDVISION_{field.upper()}" if field else "settings"
            lines.append(f"{name}: {error['msg']}")
        raise ConfigurationError(
            "invalid configuration:\n  " + "\n  ".join(lines), detail={"errors": lines}
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    return load_settings()
