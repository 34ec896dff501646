"""The storage layer's own errors, translated from the database driver at this boundary.

Streams decide what to do with a failed write by its kind, never by a driver's exception class:

* :class:`Retriable`: the database could not be reached, was busy or timed out. The same write
  can succeed later, so the caller waits and tries again (an outage stalls, it never loses).
* :class:`Rejected`: the database refused these rows (constraint, value out of range, a value
  it cannot bind). Retrying the same rows fails the same way, so the caller isolates them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa


class StorageError(Exception):
    """Base of the storage layer's errors."""


class Retriable(StorageError):
    """Transient: connection lost or refused, database busy or locked, timeout."""


class Rejected(StorageError):
    """Deterministic: these rows can never be stored as they are."""


class EmailTaken(Rejected):
    """Another account already uses this email."""


class AccountGone(StorageError):
    """No live account has this uuid (deleted meanwhile, or never one): the request that
    named it is answered as one with wrong credentials."""


#: Driver errors that say nothing about the rows: the database itself is unavailable.
_TRANSIENT = (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, sa.DisconnectionError,
              OSError, ConnectionError, TimeoutError)

#: Driver errors about the statement or its values: the same rows fail the same way again.
_DETERMINISTIC = (sa.IntegrityError, sa.DataError, sa.ProgrammingError, sa.NotSupportedError)

#: SQLSTATE classes (PostgreSQL; asyncpg's errors reach SQLAlchemy as its generic ``Error``):
#: connection exception, transaction rollback (serialization failure, deadlock), insufficient
#: resources, operator intervention (shutdown), system error...
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
#: ...and data exception (too long, NUL, out of range), integrity, syntax or access rule.
_DETERMINISTIC_CLASSES = ("22", "23", "42")


def _sqlstate(error: sa.DBAPIError) -> str | None:
    """The SQLSTATE of a PostgreSQL error, from the driver's exception or its cause."""
    for candidate in (error.orig, getattr(error.orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    cause = orig if orig is not None else error
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]


@contextmanager
def translated() -> Iterator[None]:
    """Raise :class:`Retriable` or :class:`Rejected` for the driver errors raised inside.

    Anything else (a bug, an unknown driver error) passes through unchanged; the caller counts
    it as deterministic after a bounded number of retries.
    """
    try:
        yield
    except StorageError:
        raise
    except sa.DBAPIError as error:
        state = _sqlstate(error)
        if (error.connection_invalidated or isinstance(error, _TRANSIENT)
                or (state is not None and state[:2] in _TRANSIENT_CLASSES)
                or state == "55P03"):  # lock_not_available
            raise Retriable(_reason(error)) from error
        if isinstance(error, _DETERMINISTIC) or (
                state is not None and state[:2] in _DETERMINISTIC_CLASSES):
            raise Rejected(_reason(error)) from error
        raise  # InternalError and the like: unknown, the caller bounds its retries
    except sa.StatementError as error:  # a value the driver could not bind (overflow, type)
        raise Rejected(_reason(error)) from error
    except _TRANSIENT as error:
        raise Retriable(_reason(error)) from error
    except OverflowError as error:  # sqlite3 binds integers itself, unwrapped by SQLAlchemy
        raise Rejected(_reason(error)) from error
