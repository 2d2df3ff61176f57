"""Atomic output writing and provenance shared by every stage.

Every output is written to a temporary file in the destination directory, then renamed over
the destination, so a killed job never leaves a half-written file that Snakemake would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from physweep import __version__

# Numbers as people (and YAML 1.2) write them: 3e-4, 1e5, 1.0e5, .5, -.5, +1e3. PyYAML resolves
# YAML 1.1, where a float needs a dot and a signed exponent: `lr: 3e-4` would be the string "3e-4".
FLOAT_RE = re.compile(r"""^[-+]?(?=[0-9_.]*[0-9])(?=.*[.eE])
    (?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$""", re.X)
INT_RE = re.compile(r"^[-+]?[0-9][0-9_]*$")


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads 3e-4, 1e5, 1.0e5, -.5 as floats (the YAML 1.2 spelling).

    The extra resolver is tried after PyYAML's own int and float resolvers, so what YAML 1.1
    already reads as a number is unchanged; it only turns would-be strings into floats."""


YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_RE, list("-+0123456789."))


def load_yaml(stream: Any) -> Any:
    """Parse YAML text or an open file with :class:`YamlLoader` (every config, preset, round and
    winners file is read through here)."""
    return yaml.load(stream, Loader=YamlLoader)  # a SafeLoader subclass: no arbitrary objects


def read_yaml_file(path: str | os.PathLike[str]) -> Any:
    return load_yaml(Path(path).read_text())


PACKAGES = ("torch", "numpy", "xarray", "netCDF4", "pandas", "scipy", "snakemake", "pyDOE3")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs are shared files
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


class _NoAliasDumper(yaml.SafeDumper):
    """SafeDumper that writes a value shared by two keys twice instead of as an anchor and an
    alias (``&id001`` / ``*id001``): the YAML outputs are files people read and diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_yaml(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False))


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def write_netcdf(ds: Any, path: str | os.PathLike[str]) -> None:
    """Write an xarray Dataset atomically (netCDF4 engine, zlib on data variables)."""
    encoding = {
        name: {"zlib": True, "complevel": 4}
        for name, var in ds.data_vars.items()
        if var.dtype.kind in "fiub"
    }
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@lru_cache(maxsize=1)
def code_version() -> str:
    """Git commit of the working tree (with '-dirty' when modified), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "physweep": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance() -> dict[str, str]:
    """Attributes stamped on every output: code version, package versions, host."""
    return {
        "physweep_version": __version__,
        "code_version": code_version(),
        "packages": json.dumps(package_versions(), sort_keys=True),
        "hostname": platform.node(),
        "machine": platform.machine(),
    }
