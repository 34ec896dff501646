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


#: Driver errors that say nothing about the rows: the database itself is unavailable.
_TRANSIENT = (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, sa.DisconnectionError,
              OSError, ConnectionError, TimeoutError)

#: Driver errors about the statement or its values: the same rows fail the same way again.
_DETERMINISTIC = (sa.IntegrityError, sa.DataError, sa.ProgrammingError, sa.NotSupportedError)


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
        if error.connection_invalidated or isinstance(error, _TRANSIENT):
            raise Retriable(_reason(error)) from error
        if isinstance(error, _DETERMINISTIC):
            raise Rejected(_reason(error)) from error
        raise  # InternalError and the like: unknown, the caller bounds its retries
    except sa.StatementError as error:  # a value the driver could not bind (overflow, type)
        raise Rejected(_reason(error)) from error
    except _TRANSIENT as error:
        raise Retriable(_reason(error)) from error
