"""Faust agents, one module per service: ``auth``, ``member``, ``batch``.

Each module defines ``app``, so ``faust -A signupflow.streams.<service> worker`` runs it.
"""
