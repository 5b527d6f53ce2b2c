"""Built-in vault backends: the local encrypted file, and AWS Secrets Manager."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("tapyard")


def _local_backend(url: str, key: Any) -> Any:
    from tapyard.auth import local_path
    from tapyard_credentials import LocalBackend

    return LocalBackend(local_path(url), key)


def _aws_backend(url: str, key: Any) -> Any:
    from tapyard.auth import aws_backend

    return aws_backend(url)


@hookimpl(trylast=True)
def tapyard_register_secret_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("file", _local_backend)
    register("aws-secretsmanager", _aws_backend)
