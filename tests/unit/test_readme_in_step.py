"""The README's command and settings tables, and docs/testing.md, in step with the code.

Generic on purpose: the settings the code reads are found by running ``load_settings`` on an
environment that records every name asked for (the services' and roles' names are built in
loops), plus every ``SIGNUPFLOW_...`` literal in the package; the README's settings table is
read with its abbreviations (``SIGNUPFLOW_AUTH_DATABASE_URL`` / ``_MEMBER_``: another segment;
``SIGNUPFLOW_BROKER_PORT``; ``_HOME``: another ending; ``<ROLE>``: any one segment). The
commands are click's own tree. New settings, commands and options are checked as they come.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from signupflow.cli import main
from signupflow.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PREFIX = "SIGNUPFLOW_"


class Recording(dict[str, str]):
    """An environment that remembers every name it was asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def settings_read(tmp_path: Path) -> set[str]:
    """Every environment variable of signupflow's that the package reads."""
    env = Recording({PREFIX + "BROKER_HOME": str(tmp_path / "no-broker")})
    load_settings(env)
    literals = {name for path in (ROOT / "signupflow").rglob("*.py")
                for name in re.findall(rf"[\"']({PREFIX}[A-Z0-9_]*[A-Z0-9])[\"']",
                                       path.read_text())}
    return {n for n in env.asked | literals if n.startswith(PREFIX)}


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _pattern(name: str) -> str:
    """A name of the table as a regex: ``<ROLE>`` (any placeholder) is one segment."""
    return "".join("[A-Z0-9]+" if part.startswith("<") else re.escape(part)
                   for part in re.split(r"(<[A-Z]+>)", name))


def documented() -> list[tuple[str, list[str]]]:
    """Each name (or abbreviation) of the settings table's first column, with the regexes of
    the variables it stands for."""
    rows = [line.split("|")[1] for line in section("Settings").splitlines()
            if line.startswith("| `")]
    found = []
    for cell in rows:
        tokens = re.findall(r"`([^`]+)`", cell)
        full = [t for t in tokens if not t.startswith("_")]
        for token in tokens:
            if not token.startswith("_"):
                found.append((token, [_pattern(token)]))
                continue
            patterns = []
            for name in full:
                parts = name.split("_")
                if token.endswith("_"):  # `_MEMBER_`: another value of one segment
                    patterns += [_pattern("_".join([*parts[:i], token.strip("_"),
                                                    *parts[i + 1:]]))
                                 for i in range(1, len(parts))]
                else:  # `_HOME`, `_FILE`: another ending of the name
                    patterns += [_pattern("_".join(parts[:len(parts) - k]) + token)
                                 for k in range(len(parts))]
            found.append((token, patterns))
    return found


def test_every_setting_the_code_reads_is_in_the_readme_table(tmp_path: Path) -> None:
    patterns = [p for _, ps in documented() for p in ps]
    missing = sorted(n for n in settings_read(tmp_path)
                     if not any(re.fullmatch(p, n) for p in patterns))
    assert not missing, f"read by the code, not in README's settings table: {missing}"


def test_every_setting_in_the_readme_table_is_read_by_the_code(tmp_path: Path) -> None:
    read = settings_read(tmp_path)
    source = "\n".join(p.read_text() for p in (ROOT / "signupflow").rglob("*.py"))
    stale = [token for token, patterns in documented()
             if not any(re.fullmatch(p, n) for p in patterns for n in read)
             and not (not token.startswith((PREFIX, "_")) and token in source)]
    assert not stale, f"in README's settings table, read by nothing: {stale}"


def commands(group: click.Group = main, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        elif not command.hidden:
            yield (*path, name), command


def readme_commands() -> dict[tuple[str, ...], set[str]]:
    """Each command of the README's block, with the options written beside it."""
    block = section("Command line").split("```")[1]
    lines: list[str] = []
    for line in block.splitlines():
        if line.startswith("signupflow "):
            lines.append(re.split(r"\s{2,}", line.strip())[0])
        elif line.strip() and lines:  # a continuation of the previous command
            lines[-1] += " " + re.split(r"\s{2,}", line.strip())[0]
    found: dict[tuple[str, ...], set[str]] = {}
    for line in lines:
        parent: tuple[str, ...] = ()
        group: click.Group = main
        for segment in line.removeprefix("signupflow ").split(" | "):
            names: list[tuple[str, ...]] = []
            words = segment.split()
            while words and isinstance(group, click.Group):
                alternatives = words[0].split("|")
                if alternatives[0] not in group.commands:
                    break
                words.pop(0)
                chosen = group.commands[alternatives[0]]
                if isinstance(chosen, click.Group):
                    parent, group = (*parent, alternatives[0]), chosen
                else:
                    names = [(*parent, a) for a in alternatives]
                    break
            options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", " ".join(words)))
            for name in names or [parent]:
                found.setdefault(name, set()).update(options)
    return found


def test_the_readme_lists_every_command_with_every_option() -> None:
    listed = readme_commands()
    problems = []
    for path, command in commands():
        if path not in listed:
            problems.append(f"`signupflow {' '.join(path)}` is not in README's command list")
            continue
        for option in command.params:
            if isinstance(option, click.Option) and "--help" not in option.opts and not (
                    set(option.opts) & listed[path]):
                problems.append(f"`signupflow {' '.join(path)}`: {option.opts[0]} not listed")
    for path, options in listed.items():
        real = dict(commands()).get(path)
        if real is None:
            problems.append(f"README lists `signupflow {' '.join(path)}`, which does not exist")
            continue
        names = {o for p in real.params if isinstance(p, click.Option) for o in p.opts}
        problems += [f"README lists {o} for `signupflow {' '.join(path)}`, which has no such "
                     "option" for o in options - names]
    assert not problems, "\n".join(problems)


def test_testing_md_names_every_test_file() -> None:
    """README: "What each file covers: docs/testing.md"."""
    text = (ROOT / "docs" / "testing.md").read_text()
    missing = sorted(p.name for p in (ROOT / "tests").rglob("test_*.py") if p.name not in text)
    assert not missing, f"docs/testing.md says nothing of {missing}"
