"""The input file (DESIGN §2.2): JSONL requests, read as a stream and checked line by line.

A line's `index` counts the non-blank lines before it; its position in messages is the physical
line number. Nothing here holds the whole file: ids are checked for uniqueness through 64-bit
hashes in a compact table, and only suspected duplicates are compared exactly, in a second pass.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ..store.errors import os_reason
from .model import FORBIDDEN_PARAMS, ROUTE_KEY, TOKENFLOW, Job, routed_to
from .problems import JobError, Problem, did_you_mean, json_type, sort_problems

KEPT_PROBLEMS = 1000  # more are counted, not kept: a wrong 10M-line file must not fill the memory
DUPLICATE_SUSPECTS = 10_000
FIRST_IDS = 5
_BOM = b"\xef\xbb\xbf"
_HASH_MASK = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: multiplying by it is a bijection on 64 bits
_NO_ID = object()
# the roles of OpenAI's chat API; a typo ("usr") or an empty role would fail every attempt of the line
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class InputItem(NamedTuple):
    """One request: `params` is the whole line object (the built-in handler builds the body from it).

    A named tuple, not a dataclass: one is made per request, and a tuple is made fastest."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, which nobody calls on an item
    id: str | int
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InputSummary:
    count: int  # requests, that is non-blank lines
    first_ids: tuple[str | int, ...]


def scan_input(job: Job) -> InputSummary:
    """Check every line of the input; raises JobError with the problems (the first ones kept, all counted)."""
    if job.job.input_format != TOKENFLOW:
        from .formats.reading import scan_formatted  # which imports this module's line checks

        return scan_formatted(job)
    scan = _Scan(job)
    try:
        scan.run()
    except OSError as error:
        raise JobError([Problem(scan.file, None, None, f"cannot read the input: {os_reason(error)}")]) from None
    if scan.total:
        raise JobError(sort_problems(scan.problems + scan.duplicates)[:KEPT_PROBLEMS], scan.total)
    return InputSummary(count=scan.count, first_ids=tuple(scan.first_ids))


def iter_input(
    job: Job, skip: Callable[[int], bool] | None = None, only: Collection[int] | None = None
) -> Iterator[InputItem]:
    """The requests in input order, read lazily; `skip(index)` leaves some out before they are parsed,
    `only` keeps just those indexes. Raises JobError at a line that is not a valid request."""
    if job.job.input_format != TOKENFLOW:
        from .formats.reading import iter_formatted

        yield from iter_formatted(job, skip, only)
        return
    file, builtin, chat, endpoints = str(job.job.input), job.handler is None, _is_chat(job), _endpoint_names(job)
    wanted = set(only) if only is not None else None
    last = max(wanted, default=-1) if wanted is not None else -1
    for index, line, raw in _numbered_lines(job.job.input):
        if wanted is not None:
            if index > last:
                return
            if index not in wanted:
                continue
        if skip is not None and skip(index):
            continue
        item, problem = _parse(raw)
        if problem is None:
            messages = _line_problems(item, builtin, chat, endpoints)
            if messages:
                problem = (1, messages[0])
        if problem is not None:
            raise JobError([Problem(file, line, *problem)])
        yield InputItem(index, item["id"] if "id" in item else index, item)


def _is_chat(job: Job) -> bool:
    return job.endpoint is None or job.endpoint.api == "chat"


def _endpoint_names(job: Job) -> tuple[str, ...]:
    """The names a line's `_endpoint` may give: the job's [[endpoints]], in the file's order."""
    return tuple(named.name for named in job.endpoints)


def _numbered_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(index, physical line number, bytes) of each non-blank line."""
    index = 0
    with open(path, "rb") as stream:
        for line, raw in enumerate(stream, 1):
            if line == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]  # editors on Windows add one; JSON parsers refuse it
            if raw.isspace() or not raw:  # empty only after a BOM alone
                continue
            yield index, line, raw
            index += 1


def _parse(raw: bytes) -> tuple[Any, tuple[int, str] | None]:
    """The line's JSON value, or the column and message of why it is not JSON."""
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as error:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            col = len(raw[: bad.start].decode("utf-8")) + 1
            return None, (col, f"not valid UTF-8 (byte 0x{raw[bad.start]:02x})")
        return None, (error.colno, f"invalid JSON: {error.msg}")


def _line_problems(item: Any, builtin: bool, chat: bool, endpoints: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with a parsed line, as messages; empty when it is a valid request.

    With [[endpoints]] (`endpoints`, their names), an `_endpoint` in the line or its params must name one.
    """
    if type(item) is not dict:
        return [f"expected a JSON object, found {json_type(item)}"]
    found: list[str] = []
    if "id" in item and type(item["id"]) not in (str, int):
        found.append(f'"id" must be a string or an integer, found {json_type(item["id"])}')
    if not builtin:
        return found  # with a [handler], the whole object is the handler's params
    if "messages" in item and "prompt" in item:
        found.append('a line has "messages" or "prompt", not both')
    elif "messages" in item:
        found.extend(_messages_problems(item["messages"], chat))
    elif "prompt" in item:
        if type(item["prompt"]) is not str:
            found.append(f'"prompt" must be a string, found {json_type(item["prompt"])}')
    else:
        found.append('a line needs "messages" (a list of chat messages) or "prompt" (a string)')
    if "params" in item:
        params = item["params"]
        if type(params) is not dict:
            found.append(f'"params" must be an object, found {json_type(params)}')
        else:
            found.extend(
                f'"params" must not contain "{key}": {FORBIDDEN_PARAMS[key]}'
                for key in params
                if key in FORBIDDEN_PARAMS
            )
    if endpoints:
        routed = routed_to(item)
        if routed is not None and routed not in endpoints:
            names = ", ".join(f'"{name}"' for name in endpoints)
            hint = did_you_mean(str(routed), endpoints)
            found.append(f'"{ROUTE_KEY}" names no endpoint: "{routed}" (the job\'s [[endpoints]]: {names}){hint}')
    return found


def _messages_problems(messages: Any, chat: bool) -> list[str]:
    """The first thing wrong with a line's messages, if any."""
    if not chat:
        return ['"messages" needs api = "chat"; with api = "completions" a line gives a "prompt"']
    if type(messages) is not list:
        return [f'"messages" must be a list of chat messages, found {json_type(messages)}']
    if not messages:
        return ['"messages" must not be empty']
    for n, message in enumerate(messages):
        where = f'"messages"[{n}]'
        if type(message) is not dict:
            return [f'{where} must be an object with "role" and "content", found {json_type(message)}']
        if "role" not in message:
            return [f'{where} has no "role"']
        role = message["role"]
        if type(role) is not str:
            return [f"{where}.role must be a string, found {json_type(role)}"]
        if role not in CHAT_ROLES:
            shown = orjson.dumps(role).decode()
            roles = ", ".join(CHAT_ROLES)
            return [f"{where}.role {shown} is not a chat role ({roles}){did_you_mean(role, CHAT_ROLES)}"]
        if "content" not in message:
            return [f'{where} has no "content"']
        problem = _content_problem(message["content"], f"{where}.content")
        if problem is not None:
            return [problem]
    return []


def _content_problem(content: Any, where: str) -> str | None:
    """What is wrong with a message's content: a string, or a list of parts such as {"type": "text", …}."""
    if type(content) is str:
        return None
    if type(content) is not list:
        return f"{where} must be a string or a list of content parts, found {json_type(content)}"
    for n, part in enumerate(content):
        if type(part) is not dict:
            return f'{where}[{n}] must be a content part (an object with "type"), found {json_type(part)}'
        if type(part.get("type")) is not str or not part["type"]:
            return f'{where}[{n}] needs a "type" (such as "text" or "image_url")'
    return None


class _Scan:
    """One pass over the input collecting problems and suspected duplicate ids, then a second pass
    over the suspects only when there are some."""

    def __init__(self, job: Job) -> None:
        self.path = job.job.input
        self.file = str(self.path)
        self.builtin = job.handler is None
        self.chat = _is_chat(job)
        self.endpoints = _endpoint_names(job)
        self.problems: list[Problem] = []
        self.duplicates: list[Problem] = []  # kept apart so that the first pass cannot crowd them out
        self.total = 0
        self.count = 0
        self.first_ids: list[str | int] = []
        self.hashes = _HashSet64()
        self.without_id = bytearray()  # a bit per index: the line has no "id", so its id is its index
        self.suspects: set[str | int] = set()  # id_key of each

    def report(self, line: int, col: int, message: str, into: list[Problem] | None = None) -> None:
        self.total += 1
        kept = self.problems if into is None else into
        if len(kept) < KEPT_PROBLEMS:
            kept.append(Problem(self.file, line, col, message))

    def run(self) -> None:
        for index, line, raw in _numbered_lines(self.path):
            self.count += 1
            item, problem = _parse(raw)
            if problem is not None:
                self.report(line, *problem)
                continue
            for message in _line_problems(item, self.builtin, self.chat, self.endpoints):
                self.report(line, 1, message)
            if type(item) is dict:
                self.see_id(index, item.get("id", _NO_ID))
        if self.count == 0:
            self.total += 1
            self.problems.append(Problem(self.file, None, None, "the input has no requests"))
        if self.suspects:
            self.confirm_duplicates()

    def see_id(self, index: int, ident: Any) -> None:
        if len(self.first_ids) < FIRST_IDS:
            self.first_ids.append(index if ident is _NO_ID else ident)
        if ident is _NO_ID:
            missing = (index >> 3) + 1 - len(self.without_id)
            if missing > 0:
                self.without_id.extend(bytes(missing))
            self.without_id[index >> 3] |= 1 << (index & 7)
            if self.hashes and hash(index) in self.hashes:
                self.suspect(index)
        elif type(ident) in (str, int):
            key = id_key(ident)
            seen = not self.hashes.add(hash(key))
            if seen or (type(key) is int and 0 <= key < index and self.had_no_id(key)):
                self.suspect(key)

    def had_no_id(self, index: int) -> bool:
        byte = index >> 3
        return byte < len(self.without_id) and bool(self.without_id[byte] & (1 << (index & 7)))

    def suspect(self, key: str | int) -> None:
        if key in self.suspects or len(self.suspects) < DUPLICATE_SUSPECTS:
            self.suspects.add(key)
        else:
            self.total += 1  # beyond what is worth confirming: counted as a problem, not shown

    def confirm_duplicates(self) -> None:
        """Find the exact duplicates among the suspects, with the line of each id's first use."""
        first_use: dict[str | int, tuple[int, str | int]] = {}
        for index, line, raw in _numbered_lines(self.path):
            item, problem = _parse(raw)
            if problem is not None or type(item) is not dict:
                continue
            ident = item.get("id", index)
            if type(ident) not in (str, int) or (key := id_key(ident)) not in self.suspects:
                continue
            first, first_ident = first_use.setdefault(key, (line, ident))
            if first == line:
                continue
            shown = orjson.dumps(ident).decode()
            if "id" not in item:
                message = f'duplicate id {shown} (its index, as it has no "id"): first used on line {first}'
            elif type(first_ident) is not type(ident):
                message = (
                    f"duplicate id {shown}: line {first} has {orjson.dumps(first_ident).decode()}; "
                    "a number and a string of the same digits are one id"
                )
            else:
                message = f"duplicate id {shown}: first used on line {first}"
            self.report(line, 1, message, self.duplicates)


def id_key(ident: str | int) -> str | int:
    """The id as uniqueness sees it: 1 and "1" are one id (exports, spreadsheets and JSON keys cannot tell them
    apart), so a string that is an integer as JSON writes one ("12", "-3"; not "012") counts as that integer."""
    if type(ident) is not str:
        return ident
    digits = ident[1:] if ident[:1] == "-" else ident
    if digits.isascii() and digits.isdigit() and (digits[0] != "0" or digits == "0") and ident != "-0":
        return int(ident)
    return ident


class _HashSet64:
    """A set of 64-bit numbers in one flat array with open addressing: about 16 bytes an entry, where
    a Python set of ids costs about 100 (its slot, the object, the object's hash and refcount)."""

    __slots__ = ("_count", "_shift", "_slots")

    def __init__(self) -> None:
        self._slots = array("Q", [0]) * 1024
        self._shift = 64 - 10
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, value: int) -> bool:
        return self._slots[self._place(_mix(value))] != 0

    def add(self, value: int) -> bool:
        """Add `value`; False when it was there already."""
        mixed = _mix(value)
        i = self._place(mixed)
        if self._slots[i]:
            return False
        self._slots[i] = mixed
        self._count += 1
        if self._count * 2 > len(self._slots):
            old = self._slots
            self._slots = array("Q", [0]) * (len(old) * 2)
            self._shift -= 1
            for mixed in old:
                if mixed:
                    self._slots[self._place(mixed)] = mixed
        return True

    def _place(self, mixed: int) -> int:
        """The slot that holds `mixed`, or the empty slot where it goes."""
        slots, mask = self._slots, len(self._slots) - 1
        i = mixed >> self._shift
        while True:
            found = slots[i]
            if found == mixed or not found:
                return i
            i = (i + 1) & mask


def _mix(value: int) -> int:
    """Spread the bits of a hash, never 0 (the mark of an empty slot): Python hashes small ints to
    themselves, and runs of them would otherwise sit in one long cluster of slots."""
    return ((value * _MIX) & _HASH_MASK) or 1
