"""What the conformance kit is pointed at: a project directory, an sdist, a wheel,
or an installed connector's name, resolved to the files the kit reads (the
manifest, the package metadata, the conformance settings and the cassettes)
and the directory its code is imported from."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Any

from tapyard.base import MANIFEST_FILE, ConfigError

__all__ = ["Target", "resolve_target"]


@dataclass
class Target:
    """A connector package as the kit sees it."""

    #: what the user named
    given: str
    #: the project directory (pyproject.toml, README, cassettes), None for a wheel
    root: Path | None
    #: the directory the package is imported from
    import_root: Path
    #: entry-point name -> module (the ``tapyard`` group)
    entry_points: dict[str, str]
    distribution: str | None = None
    version: str | None = None
    requires_core: str | None = None
    license: str | None = None
    homepage: str | None = None
    #: ``[tool.tapyard.conformance.<connector>]`` tables by connector name
    conformance: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a temporary directory to remove when the kit is done
    scratch: Path | None = None
    #: what it was: "project", "sdist", "wheel" or "installed"
    origin: str = "project"
    #: the README a wheel carries as its long description (a project's is a file in root)
    readme: str | None = None

    def package_dirs(self) -> list[Path]:
        """The top-level package directory of each entry point."""
        dirs = []
        for module in self.entry_points.values():
            top = module.split(":")[0].split(".")[0]
            candidate = self.import_root / top
            if candidate.is_dir() and candidate not in dirs:
                dirs.append(candidate)
        return dirs

    def manifest_files(self) -> list[Path]:
        return [d / MANIFEST_FILE for d in self.package_dirs() if (d / MANIFEST_FILE).is_file()]

    def meta(self) -> dict[str, str | None]:
        return {
            "distribution": self.distribution,
            "version": self.version,
            "requires_core": self.requires_core,
            "license": self.license,
            "homepage": self.homepage,
        }

    def cleanup(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _core_range(requirements: list[str]) -> str | None:
    from tapyard.plugins import core_requirement

    return core_requirement(requirements)


def _from_project(root: Path, given: str) -> Target:
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{root / 'pyproject.toml'}: cannot be read ({type(exc).__name__}); fix the file") from None
    project = data.get("project") or {}
    entry_points = dict((project.get("entry-points") or {}).get("tapyard") or {})
    if not entry_points:
        raise ConfigError(
            f"{root / 'pyproject.toml'} declares no [project.entry-points.tapyard]: add "
            "NAME = \"your_package\" so that tapyard can find the connector"
        )
    licence = project.get("license")
    if isinstance(licence, dict):
        licence = licence.get("text")
    urls = {k.lower(): v for k, v in (project.get("urls") or {}).items()}
    src = root / "src" if (root / "src").is_dir() else root
    conformance = ((data.get("tool") or {}).get("tapyard") or {}).get("conformance") or {}
    return Target(
        given=given,
        root=root,
        import_root=src,
        entry_points={k: str(v) for k, v in entry_points.items()},
        distribution=project.get("name"),
        version=project.get("version"),
        requires_core=_core_range(list(project.get("dependencies") or [])),
        license=licence if isinstance(licence, str) else None,
        homepage=urls.get("homepage") or urls.get("home") or urls.get("source") or urls.get("repository"),
        conformance={k: v for k, v in conformance.items() if isinstance(v, dict)},
    )


def _from_wheel(path: Path, given: str) -> Target:
    scratch = Path(tempfile.mkdtemp(prefix="tapyard-kit-"))
    try:
        with zipfile.ZipFile(path) as wheel:
            wheel.extractall(scratch)
    except (OSError, zipfile.BadZipFile) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ConfigError(f"{path}: not a readable wheel ({type(exc).__name__})") from None
    infos = list(scratch.glob("*.dist-info"))
    if not infos:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ConfigError(f"{path}: a wheel without a .dist-info folder")
    meta = Parser().parsestr((infos[0] / "METADATA").read_text(encoding="utf-8", errors="replace"))
    entry_points: dict[str, str] = {}
    eps = infos[0] / "entry_points.txt"
    if eps.is_file():
        import configparser

        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(eps.read_text(encoding="utf-8"))
        if parser.has_section("tapyard"):
            entry_points = {k: v.strip() for k, v in parser.items("tapyard")}
    homepage = meta.get("Home-page")
    for url in meta.get_all("Project-URL") or ():
        label, _, address = url.partition(",")
        if label.strip().lower() in ("homepage", "home", "source", "repository"):
            homepage = homepage or address.strip()
    return Target(
        given=given,
        root=None,
        import_root=scratch,
        entry_points=entry_points,
        distribution=meta.get("Name"),
        version=meta.get("Version"),
        requires_core=_core_range(meta.get_all("Requires-Dist") or []),
        license=meta.get("License-Expression") or meta.get("License"),
        homepage=homepage,
        scratch=scratch,
        origin="wheel",
        readme=str(meta.get_payload() or "") or None,
    )


def _from_sdist(path: Path, given: str) -> Target:
    scratch = Path(tempfile.mkdtemp(prefix="tapyard-kit-"))
    try:
        with tarfile.open(path) as archive:
            archive.extractall(scratch, filter="data")
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ConfigError(f"{path}: not a readable source distribution ({type(exc).__name__})") from None
    roots = [p.parent for p in scratch.glob("*/pyproject.toml")]
    if len(roots) != 1:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ConfigError(f"{path}: expected one project (pyproject.toml) in the archive, found {len(roots)}")
    target = _from_project(roots[0], given)
    target.scratch = scratch
    target.origin = "sdist"
    return target


def _from_installed(name: str) -> Target:
    for ep in metadata.entry_points(group="tapyard"):
        if ep.name != name or ep.dist is None:
            continue
        dist = ep.dist
        direct = dist.read_text("direct_url.json")
        if direct:
            info = json.loads(direct)
            url = str(info.get("url", ""))
            if url.startswith("file://") and (info.get("dir_info") or {}).get("editable"):
                root = Path(url[len("file://") :])
                if (root / "pyproject.toml").is_file():
                    target = _from_project(root, name)
                    target.version = dist.version
                    return target
        top = ep.module.split(".")[0]
        files = [f for f in dist.files or () if f.parts and f.parts[0] == top]
        if not files:
            break
        located = Path(str(dist.locate_file(files[0]))).parents[len(files[0].parts) - 1]
        from tapyard.plugins import distribution_meta

        meta = distribution_meta(ep)
        return Target(
            given=name,
            root=None,
            import_root=located,
            entry_points={ep.name: ep.value},
            distribution=meta["distribution"],
            version=meta["version"],
            requires_core=meta["requires_core"],
            license=meta["license"],
            homepage=meta["homepage"],
            origin="installed",
        )
    raise ConfigError(
        f"{name!r} is neither a path nor an installed connector's entry point; "
        "give the connector project's directory, a wheel or an sdist, or install it first"
    )


def resolve_target(given: str | Path) -> Target:
    """The target the user named, or a one-line :class:`~tapyard.ConfigError`."""
    path = Path(given)
    text = str(given)
    if path.is_dir():
        if not (path / "pyproject.toml").is_file():
            raise ConfigError(f"{path} holds no pyproject.toml: give a connector project's directory")
        return _from_project(path.resolve(), text)
    if path.is_file():
        if path.suffix == ".whl":
            return _from_wheel(path, text)
        if path.name.endswith((".tar.gz", ".tgz")):
            return _from_sdist(path, text)
        raise ConfigError(f"{path}: give a project directory, a wheel (.whl) or an sdist (.tar.gz)")
    if "/" in text or text.startswith("."):
        raise ConfigError(f"{text}: no such file or directory")
    return _from_installed(text)
