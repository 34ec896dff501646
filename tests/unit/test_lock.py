"""The environment `make test` builds is one resolved set: constraints.txt (made by `make
lock`) pins every package of setup.cfg's requirements and extras, within their ranges, and the
environment running these tests is exactly that set. Finding: installing the `bench` extra
downgraded pydantic and confluent-kafka in the project's environment."""

from __future__ import annotations

import configparser
import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    found: dict[str, str] = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            found[canonicalize_name(name)] = version.strip()
    return found


def requirements() -> list[Requirement]:
    """install_requires and every extra of setup.cfg, as they apply on this platform."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    lines += [line for extra in cfg["options.extras_require"].values()
              for line in extra.splitlines()]
    wanted = [Requirement(line) for line in lines if line.strip()]
    return [r for r in wanted if r.marker is None or r.marker.evaluate()]


def test_the_lock_pins_every_requirement_within_its_range() -> None:
    """Fails after a requirement changes in setup.cfg until `make lock` is run again."""
    pinned = pins()
    missing = [str(r) for r in requirements() if canonicalize_name(r.name) not in pinned]
    assert not missing, f"not in constraints.txt (run `make lock`): {missing}"
    outside = [f"{r} (locked {pinned[canonicalize_name(r.name)]})" for r in requirements()
               if not r.specifier.contains(pinned[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"constraints.txt out of range (run `make lock`): {outside}"


def test_this_environment_is_the_locked_set() -> None:
    installed: dict[str, str] = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions()}
    differ = {name: (version, installed.get(name)) for name, version in pins().items()
              if installed.get(name) != version}
    assert not differ, f"locked vs installed (rebuild the venv: make clean test-unit): {differ}"
