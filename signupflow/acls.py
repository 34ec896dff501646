"""Least privilege: the Kafka ACLs that let each principal do exactly what it uses.

The plan is pure data, derived from :func:`signupflow.topics.service_uses` (the topics and group
of each service), so the grants follow the code: a topic a service starts to use is granted to
it, and nothing else is. ``signupflow broker start --secure`` applies it to the local cluster;
``signupflow acls`` prints it as ``kafka-acls.sh`` commands for any other cluster.

* each service: READ on its group and on the topics it reads, WRITE on those it writes,
  DESCRIBE_CONFIGS on all of them (a worker checks their replication at start-up);
* ``reader`` (``verify``, ``trace``, ``dlq show``, ``broker status``): READ on the event topics,
  dead letters and changelogs, DESCRIBE on Faust's leader topics; no group, no write;
* ``operator`` (``topics``, ``dlq replay``): CREATE, DESCRIBE and DESCRIBE_CONFIGS on every
  topic; WRITE on the event topics and READ on the dead letters (replay), READ on the replay
  group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from signupflow.kafka_client import KafkaAccess, admin
from signupflow.settings import SERVICES, Principal, Settings
from signupflow.topics import DATA_TOPICS, REPLAY_GROUP, dlq_topic, leader_topics, service_uses

Resource = Literal["TOPIC", "GROUP"]
Operation = Literal["READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS"]

#: Kafka's protocol codes (org.apache.kafka.common.acl / resource).
RESOURCE_CODES: Mapping[Resource, int] = {"TOPIC": 2, "GROUP": 3}
OPERATION_CODES: Mapping[Operation, int] = {
    "READ": 3, "WRITE": 4, "CREATE": 5, "DESCRIBE": 8, "DESCRIBE_CONFIGS": 10}
LITERAL, ALLOW = 3, 3


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW grant of ``operation`` on the resource named exactly ``name``."""

    principal: str
    resource: Resource
    name: str
    operation: Operation

    def kafka_acls(self, command_config: str = "admin.properties") -> str:
        """The same as a ``kafka-acls.sh`` command line."""
        option = "--topic" if self.resource == "TOPIC" else "--group"
        operation = "".join(word.title() for word in self.operation.split("_"))
        return (f"kafka-acls.sh --bootstrap-server $BOOTSTRAP --command-config {command_config} "
                f"--add --allow-principal {self.principal} --operation {operation} "
                f"{option} {self.name}")


def plan(settings: Settings, principals: Mapping[Principal, str]) -> list[Acl]:
    """Every grant, each principal named as Kafka sees it (``User:signupflow-member``)."""
    uses = service_uses(settings)
    acls: set[Acl] = set()

    def grant(who: Principal, resource: Resource, names: Iterable[str],
              *operations: Operation) -> None:
        acls.update(Acl(principals[who], resource, n, op) for n in names for op in operations)

    for service in SERVICES:
        use = uses[service]
        grant(service, "GROUP", [use.group], "READ")
        grant(service, "TOPIC", use.reads, "READ")
        grant(service, "TOPIC", use.writes, "WRITE")
        grant(service, "TOPIC", use.topics, "DESCRIBE_CONFIGS")
    every = {t for use in uses.values() for t in use.topics}
    leaders = set(leader_topics(settings))
    grant("reader", "TOPIC", every - leaders, "READ")
    grant("reader", "TOPIC", leaders, "DESCRIBE")
    grant("operator", "TOPIC", every, "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS")
    grant("operator", "TOPIC", DATA_TOPICS, "WRITE")
    grant("operator", "TOPIC", [dlq_topic(t) for t in DATA_TOPICS], "READ")
    grant("operator", "GROUP", [REPLAY_GROUP], "READ")
    return sorted(acls)


class AclError(RuntimeError):
    """The cluster refused to create a grant."""


async def apply(kafka: KafkaAccess, acls: Iterable[Acl]) -> int:
    """Create the grants (an existing one is left as it is), as a principal allowed to alter
    the cluster's ACLs; returns how many were sent."""
    from aiokafka.protocol.admin import CreateAclsRequest

    client = admin(kafka)
    await client.start()
    try:
        requests = [CreateAclsRequest(RESOURCE_CODES[a.resource], a.name, LITERAL, a.principal,
                                      "*", OPERATION_CODES[a.operation], ALLOW) for a in acls]
        responses = await asyncio.gather(*(client._send_request(r) for r in requests))
    finally:
        await client.close()
    for response in responses:
        for code, message in response.creation_responses:
            if code:
                raise AclError(f"creating an ACL failed: error {code} {message or ''}".strip())
    return len(responses)
