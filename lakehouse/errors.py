"""Errors the CLI turns into a one-line reason on stderr and a non-zero exit code."""

from __future__ import annotations

import os
import re


class LakehouseError(Exception):
    """An expected failure: bad input, bad config, refused release. The message says what to do."""

    exit_code = 1


class BudgetExceeded(LakehouseError):
    exit_code = 3


class LockBusy(LakehouseError):
    # EX_TEMPFAIL: a scheduler may simply retry later.
    exit_code = 75


_SECRET_ENV = ("AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN",
               "AZURE_CLIENT_SECRET", "LAKEHOUSE_PSEUDONYM_KEY")
_KEY_PATTERNS = (
    re.compile(r"(AccountKey=)[^;\s'\"]+", re.I),
    re.compile(r"(SharedAccessSignature=)[^;\s'\"]+", re.I),
    re.compile(r"(sig=)[^&\s'\"]+", re.I),
    re.compile(r"(fs\.azure\.account\.key\.[^\s=]+\s*[=:]\s*)\S+", re.I),
)


def redact(text: str) -> str:
    """Removes every secret we know of from text meant for a terminal or a log."""
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
            # connection strings embed the key; redact the key on its own too
            for part in value.split(";"):
                if part.lower().startswith("accountkey="):
                    text = text.replace(part.split("=", 1)[1], "***")
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


_ERROR_CLASS = re.compile(r"^\[[A-Z0-9_.]+\]\s*")
_SQLSTATE = re.compile(r"\s*SQLSTATE: \w+")


def spark_message(exc: BaseException) -> str:
    """A Spark error as one whole line: its message up to the query excerpt ("== SQL ==") or the
    JVM stack, lines joined, without the [ERROR_CLASS] prefix and the SQLSTATE code."""
    lines: list[str] = []
    for line in str(exc).strip().splitlines():
        # the query excerpt, the JVM stack, or an analysed plan's tree ('Project ..., +- Relation ...)
        if line.startswith(("== SQL", "JVM stacktrace:", "\tat ")) or line.lstrip().startswith(("'", "+-", ":-")) \
                or (lines and not line.strip()):
            break
        if line.strip():
            lines.append(line.strip())
    text = _SQLSTATE.sub("", _ERROR_CLASS.sub("", " ".join(lines))).strip().rstrip(";").strip()
    return text or type(exc).__name__
