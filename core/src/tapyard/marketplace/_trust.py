"""Verifying what a registry serves: python-tuf's client workflow over one :class:`Source`.

The last metadata this machine trusted for a registry is kept in the data
directory (``trust/<id>/``, beside a ``location`` file naming the registry),
so a later index older than it (rollback), an expired one (freeze), or
metadata that does not match the signed snapshot (mix-and-match) is refused.
The first contact trusts the registry's first root (``1.root.json``) and says
so; later roots must be signed by the keys of the one before. Another address
of a registry already trusted (a mirror of it: the same first root) starts
from what is trusted for that registry, so rollback protection carries over.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater, UpdaterConfig

from tapyard.marketplace._errors import RegistryError, VerificationError
from tapyard.marketplace._source import Source

__all__ = ["Verifier", "forget", "pin_root", "trust_dir"]


def trust_dir(source: Source) -> Path:
    from tapyard_credentials import data_dir

    return data_dir() / "trust" / source.trust_id


def _known_as(identity: str, own: Path) -> Path | None:
    """The trust folder of another address of the registry whose first root hashes to ``identity``."""
    best = None
    for folder in own.parent.iterdir() if own.parent.is_dir() else []:
        if folder == own or not (folder / "root.json").exists():
            continue
        try:
            if (folder / "identity").read_text(encoding="utf-8").strip() != identity:
                continue
        except OSError:
            continue
        if best is None or (folder / "timestamp.json").stat().st_mtime > (best / "timestamp.json").stat().st_mtime:
            best = folder if (folder / "timestamp.json").exists() else best
    return best


def _short(text: object) -> str:
    line = str(text).splitlines()[0] if str(text) else ""
    return line if len(line) <= 200 else line[:197] + "..."


class Verifier:
    """python-tuf's Updater for one registry, with errors turned into one-line refusals."""

    def __init__(self, source: Source, metadata_dir: Path | None = None) -> None:
        self.source = source
        self.dir = metadata_dir or trust_dir(source)
        self.first_contact = False
        self._updater: Updater | None = None

    def _open(self) -> Updater:
        if self._updater is not None:
            return self._updater
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "location").write_text(self.source.display + "\n", encoding="utf-8")
        bootstrap = None
        if not (self.dir / "root.json").exists():
            bootstrap = self.source.read("tuf/1.root.json")
            if bootstrap is None:
                raise RegistryError(f"{self.source.display} serves no signed index (tuf/1.root.json); is it a tapyard registry?")
            identity = hashlib.sha256(bootstrap).hexdigest()
            known = _known_as(identity, self.dir)
            if known is not None:
                # the same registry reached at another address (its mirror, say): carry on from what
                # this machine already trusts for it, so an older copy is still a rollback
                for trusted in known.glob("*.json"):
                    shutil.copy2(trusted, self.dir / trusted.name)
                bootstrap = None
            else:
                self.first_contact = True
            (self.dir / "identity").write_text(identity + "\n", encoding="utf-8")
        config = UpdaterConfig(prefix_targets_with_hash=False, app_user_agent="tapyard")
        try:
            self._updater = Updater(
                metadata_dir=str(self.dir),
                metadata_base_url=self.source.url("tuf/"),
                target_base_url=self.source.url("targets/"),
                fetcher=self.source,
                config=config,
                bootstrap=bootstrap,
            )
        except (tuf_errors.RepositoryError, ValueError) as exc:
            raise VerificationError(f"refused: the registry's root metadata does not verify ({_short(exc)})") from None
        return self._updater

    def refresh(self) -> None:
        """Fetch and verify the newest top-level metadata."""
        updater = self._open()
        self._guard(updater.refresh)

    def _guard(self, call: object, *args: object) -> object:
        assert callable(call)
        try:
            return call(*args)
        except tuf_errors.ExpiredMetadataError as exc:
            raise VerificationError(
                f"refused: the registry's signed index has expired ({_short(exc)}): a frozen or stale copy; "
                "refresh the mirror or try again later"
            ) from None
        except tuf_errors.BadVersionNumberError as exc:
            if str(exc).startswith("Expected"):
                raise VerificationError(
                    f"refused: metadata the registry served is not the version its signed snapshot names ({_short(exc)}): a mix-and-match"
                ) from None
            raise VerificationError(
                f"refused: the registry served an index older than the one this machine already trusts ({_short(exc)}): a rollback"
            ) from None
        except tuf_errors.UnsignedMetadataError as exc:
            raise VerificationError(f"refused: index metadata is not signed by the keys it must be ({_short(exc)})") from None
        except tuf_errors.LengthOrHashMismatchError as exc:
            raise VerificationError(f"refused: a file does not match its signed length and checksum ({_short(exc)})") from None
        except tuf_errors.RepositoryError as exc:
            raise VerificationError(f"refused: the registry's signed index does not verify ({_short(exc)})") from None
        except tuf_errors.DownloadError as exc:
            raise RegistryError(f"cannot download from the registry at {self.source.display} ({_short(exc)})") from None

    def download(self, target_path: str, dest_dir: Path) -> tuple[Path, dict[str, object]]:
        """The verified file for ``target_path`` in ``dest_dir``, and its signed target info.

        Refuses (:class:`VerificationError`) when the signed index does not
        list it, or when what was downloaded differs from what it lists.
        """
        updater = self._open()
        info = self._guard(updater.get_targetinfo, target_path)
        if info is None:
            raise VerificationError(
                f"refused: {target_path} is not in the registry's signed index (the listing names a file no publisher signed for)"
            )
        destination = dest_dir / target_path.split("/")[-1]
        self._guard(updater.download_target, info, str(destination))
        return destination, dict(info.to_dict())  # type: ignore[attr-defined]

    def remember_root(self) -> str | None:
        """The key ids of the trusted root, for messages."""
        try:
            root = json.loads((self.dir / "root.json").read_text(encoding="utf-8"))
            return ",".join(sorted(root["signed"]["roles"]["root"]["keyids"]))[:16]
        except (OSError, ValueError, KeyError):
            return None


def pin_root(source: Source, root_bytes: bytes) -> str:
    """Trust ``root_bytes`` (a root metadata file got out of band) for ``source`` from now on.

    The file must be a root role signed by its own threshold of keys. What this
    machine trusted for ``source`` before is dropped: the pinned root is the
    only anchor, and the registry's later roots must chain from it.
    """
    from tuf.api.metadata import Metadata, Root

    try:
        root = Metadata[Root].from_bytes(root_bytes)
        if root.signed.type != "root":
            raise ValueError
        root.verify_delegate("root", root)
    except Exception:
        raise VerificationError("refused: that file is not a root metadata file signed by its own keys") from None
    folder = trust_dir(source)
    forget(source)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "root.json").write_bytes(root_bytes)
    (folder / "location").write_text(source.display + "\n", encoding="utf-8")
    if root.signed.version == 1:
        (folder / "identity").write_text(hashlib.sha256(root_bytes).hexdigest() + "\n", encoding="utf-8")
    return ",".join(sorted(root.signed.roles["root"].keyids))[:16]


def forget(source: Source) -> None:
    """Drop what this machine trusts for ``source`` (used when a registry is re-created on purpose)."""
    folder = trust_dir(source)
    if folder.is_dir():
        shutil.rmtree(folder)
