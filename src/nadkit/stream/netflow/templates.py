"""Templates of NetFlow v9 and IPFIX sessions (:class:`Template`, with the NumPy record layout that
decodes their records), the checks a template must pass (:func:`check_template`), and the parsing of
a packet's sets, of template and options template sets, and of records with variable-length fields."""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np

from nadkit.stream.netflow.fields import (
    _REVERSE_READ,
    FIELD_LENGTHS,
    MAX_RECORD_BYTES,
    REVERSE_PEN,
    SET_HEADER,
    VARIABLE_LENGTH,
    Rejected,
)


class Template:
    """A template (or options template) of one session: its fields and, when every field has a fixed
    length, the NumPy record layout that decodes its records in one step."""

    __slots__ = ("dtype", "fields", "index", "record_length", "scope_fields", "template_id")

    def __init__(
        self, template_id: int, fields: Iterable[tuple[int, int, int]], scope_fields: int = 0
    ) -> None:
        self.template_id = template_id
        self.fields: tuple[tuple[int, int, int], ...] = tuple(fields)
        self.scope_fields = scope_fields
        self.index: dict[tuple[int, int], str] = {}
        variable = any(length == VARIABLE_LENGTH for _, length, _ in self.fields)
        self.record_length = sum(length for _, length, _ in self.fields if length != VARIABLE_LENGTH)
        layout: list[tuple[str, str]] = []
        for position, (element, length, enterprise) in enumerate(self.fields):
            name = f"f{position}"
            self.index.setdefault((element, enterprise), name)
            if length == VARIABLE_LENGTH:
                continue
            layout.append((name, _field_format(length)))
        self.dtype: np.dtype | None = None if variable else np.dtype(layout)

    @property
    def options(self) -> bool:
        return self.scope_fields > 0

    def same_as(self, other: Template) -> bool:
        return self.fields == other.fields and self.scope_fields == other.scope_fields

    def __repr__(self) -> str:
        return f"Template({self.template_id}, {len(self.fields)} fields, scope {self.scope_fields})"


def _field_format(length: int) -> str:
    if length == 1:
        return "u1"
    if length in (2, 4, 8):
        return f">u{length}"
    return f"V{length}"


def check_template(template: Template) -> None:
    """Raise :class:`Rejected` when a field the decoder reads has a length its type does not allow."""
    if template.record_length > MAX_RECORD_BYTES:
        raise Rejected(
            "bad_template", f"template {template.template_id}: records of {template.record_length} bytes"
        )
    for element, length, enterprise in template.fields:
        if length == 0:
            raise Rejected("bad_template", f"template {template.template_id}: element {element} has length 0")
        if enterprise == 0 or (enterprise == REVERSE_PEN and element in _REVERSE_READ):
            allowed = FIELD_LENGTHS.get(element)
            if allowed is not None and length not in allowed:
                raise Rejected(
                    "bad_template",
                    f"template {template.template_id}: element {element} has length {length}"
                    f" (allowed: {', '.join(map(str, allowed))})",
                )


def _sets(data: bytes, offset: int, end: int) -> Iterable[tuple[int, bytes]]:
    """(set id, body) of each flowset / set of a packet."""
    while offset + 4 <= end:
        set_id, length = SET_HEADER.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            raise ValueError(f"set {set_id} at byte {offset} has length {length}")
        yield set_id, data[offset + 4 : offset + length]
        offset += length


def _v9_templates(body: bytes) -> list[tuple[int, Template | None]]:
    found: list[tuple[int, Template | None]] = []
    offset = 0
    while offset + 4 <= len(body):
        template_id, count = SET_HEADER.unpack_from(body, offset)
        if template_id < 256:  # padding
            break
        offset += 4
        if offset + 4 * count > len(body):
            raise ValueError(f"template {template_id} is cut short")
        fields = [(*struct.unpack_from(">HH", body, offset + 4 * i), 0) for i in range(count)]
        offset += 4 * count
        found.append((template_id, Template(template_id, fields)))
    return found


def _v9_options_templates(body: bytes) -> list[tuple[int, Template | None]]:
    found: list[tuple[int, Template | None]] = []
    offset = 0
    while offset + 6 <= len(body):
        template_id, scope_bytes, option_bytes = struct.unpack_from(">HHH", body, offset)
        if template_id < 256:
            break
        offset += 6
        if offset + scope_bytes + option_bytes > len(body):
            raise ValueError(f"options template {template_id} is cut short")
        count = (scope_bytes + option_bytes) // 4
        fields = []
        for i in range(count):
            element, length = struct.unpack_from(">HH", body, offset + 4 * i)
            # v9 scope field types (system, interface, ...) overlap element numbers: keep them apart
            fields.append((element, length, -1 if i < scope_bytes // 4 else 0))
        offset += scope_bytes + option_bytes
        found.append((template_id, Template(template_id, fields, scope_fields=max(1, scope_bytes // 4))))
    return found


def _ipfix_templates(body: bytes, *, options: bool) -> list[tuple[int, Template | None]]:
    found: list[tuple[int, Template | None]] = []
    offset = 0
    while offset + 4 <= len(body):
        template_id, count = SET_HEADER.unpack_from(body, offset)
        offset += 4
        if count == 0:
            found.append((template_id, None))
            continue
        if template_id < 256:
            raise ValueError(f"template id {template_id} is reserved")
        scope = 0
        if options:
            (scope,) = struct.unpack_from(">H", body, offset)
            offset += 2
            if scope == 0 or scope > count:
                raise ValueError(f"options template {template_id} has scope field count {scope}")
        fields = []
        for _ in range(count):
            element, length = struct.unpack_from(">HH", body, offset)
            offset += 4
            enterprise = 0
            if element & 0x8000:
                (enterprise,) = struct.unpack_from(">I", body, offset)
                offset += 4
                element &= 0x7FFF
            fields.append((element, length, enterprise))
        found.append((template_id, Template(template_id, fields, scope_fields=scope)))
    return found


def _variable_length(body: bytes, offset: int) -> tuple[int, int]:
    """(length, offset of the value) of an IPFIX variable-length field at ``offset``."""
    length = body[offset]
    if length < 255:
        return length, offset + 1
    return struct.unpack_from(">H", body, offset + 1)[0], offset + 3


def _count_records(template: Template, body: bytes) -> int:
    if template.dtype is not None:
        return len(body) // template.record_length if template.record_length else 0
    return _repack(template, body)[1]


def _repack(template: Template, body: bytes) -> tuple[bytes, int, Template]:
    """Records of a template with variable-length fields rewritten as fixed-length records of its
    fixed-length fields (what the flow mapping reads), with the template that describes them."""
    fixed = [(i, f) for i, f in enumerate(template.fields) if f[1] != VARIABLE_LENGTH]
    out = bytearray()
    count = 0
    offset = 0
    minimum = template.record_length + sum(1 for f in template.fields if f[1] == VARIABLE_LENGTH)
    while offset + max(minimum, 1) <= len(body):
        values: dict[int, bytes] = {}
        for position, (_, length, _) in enumerate(template.fields):
            if length == VARIABLE_LENGTH:
                length, offset = _variable_length(body, offset)
            else:
                values[position] = body[offset : offset + length]
            offset += length
            if offset > len(body):
                raise ValueError(f"record of template {template.template_id} is cut short")
        out += b"".join(values[i] for i, _ in fixed)
        count += 1
    packed = Template(template.template_id, (f for _, f in fixed), template.scope_fields)
    return bytes(out), count, packed
