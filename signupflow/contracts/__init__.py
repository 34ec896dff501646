"""Event contracts: each topic's JSON Schema generated from the Records, the compatibility gate
between the committed schemas and today's Records, and the AsyncAPI document.

``catalogue`` says what each topic carries; ``jsonschema_of`` writes a shape as JSON Schema;
``compat`` compares two schemas both ways; ``files`` keeps ``schemas/`` and ``asyncapi``
writes ``docs/asyncapi.yaml``. Why it is built this way: docs/decisions/event-contracts.md.
"""
