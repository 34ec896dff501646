"""The committed schemas under ``schemas/``: generate, check against today's Records, export.

``export`` rewrites a version's file only while today's Records stay compatible with it both
ways (an optional field added, a description changed): a break cannot be exported over the
version it breaks, it needs a new version (README, "Event contracts").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from signupflow.contracts.catalogue import CONTRACTS, Contract
from signupflow.contracts.compat import Break, compare
from signupflow.contracts.jsonschema_of import DIALECT, kinds_schema


class ContractBroken(RuntimeError):
    """Today's Records break a committed schema; ``str()`` names each topic, field and rule."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def generated(contract: Contract) -> dict[str, Any]:
    """The schema of ``contract`` as today's code defines it."""
    what = "headers" if contract.part == "headers" else "value"
    return {
        "$schema": DIALECT,
        "$comment": f"The {what} of {contract.topic}, version {contract.version}: written by "
                    "`signupflow schemas export` from signupflow/models; do not edit.",
        **kinds_schema(contract.kinds, contract.discriminator, contract.topic),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def committed(contract: Contract, root: Path) -> dict[str, Any] | None:
    """The committed schema of ``contract``'s version (None: there is none yet)."""
    path = root / contract.file
    if not path.exists():
        return None
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def breaks(contract: Contract, root: Path) -> list[Break]:
    """How today's Records break the committed schema of ``contract``'s version."""
    schema = committed(contract, root)
    return [] if schema is None else compare(contract.topic, schema, generated(contract))


def gate(root: Path, contracts: Sequence[Contract] = CONTRACTS) -> list[str]:
    """Every problem between today's Records and the committed schemas ([]: compatible)."""
    problems: list[str] = []
    for contract in contracts:
        if committed(contract, root) is None:
            problems.append(f"{contract.topic}: no committed schema {contract.file}: run "
                            "`signupflow schemas export`, review it and commit it")
        problems.extend(map(str, breaks(contract, root)))
    return problems


def stale(root: Path, contracts: Sequence[Contract] = CONTRACTS) -> list[str]:
    """The schema files that differ from what today's Records generate."""
    return [c.file for c in contracts
            if not (root / c.file).exists()
            or (root / c.file).read_text(encoding="utf-8") != render(generated(c))]


def export(root: Path, contracts: Sequence[Contract] = CONTRACTS) -> list[str]:
    """Write each contract's schema file; returns the files changed. Writes nothing and raises
    :class:`ContractBroken` if today's Records break any committed version."""
    problems = [str(b) for c in contracts for b in breaks(c, root)]
    if problems:
        raise ContractBroken(problems)
    changed = stale(root, contracts)
    for contract in contracts:
        if contract.file in changed:
            path = root / contract.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(generated(contract)), encoding="utf-8")
    return changed
