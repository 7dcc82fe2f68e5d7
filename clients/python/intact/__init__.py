"""A Python client for intact, the artifact store: publish versions from pipelines and farm
jobs in transactions that commit on success and abort on any exception, move tags, read
versions back byte-exact."""

from .client import UNCONDITIONAL, Client, farm_job_key
from .errors import (
    AuthError,
    BlobNotStoredError,
    ChecksumMismatchError,
    ConflictError,
    ConflictLikeError,
    ExistsError,
    ForbiddenError,
    IdempotencyMismatchError,
    IntactError,
    IntegrityError,
    InvalidError,
    LockedError,
    NotFoundError,
    NotOpenError,
    RateLimitedError,
    ServerError,
    TagMovedError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
    UploadsInProgressError,
)
from .models import FileEntry, Manifest, Tag, TagMove, VersionInfo
from .transaction import Source, Transaction

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BlobNotStoredError",
    "ChecksumMismatchError",
    "Client",
    "ConflictError",
    "ConflictLikeError",
    "ExistsError",
    "FileEntry",
    "ForbiddenError",
    "IdempotencyMismatchError",
    "IntactError",
    "IntegrityError",
    "InvalidError",
    "LockedError",
    "Manifest",
    "NotFoundError",
    "NotOpenError",
    "RateLimitedError",
    "ServerError",
    "Source",
    "Tag",
    "TagMove",
    "TagMovedError",
    "TooLargeError",
    "Transaction",
    "UNCONDITIONAL",
    "UnauthorizedError",
    "UnavailableError",
    "UploadsInProgressError",
    "VersionInfo",
    "farm_job_key",
]
