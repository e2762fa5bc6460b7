"""Turns fakesnow's Arrow result (`rowsetBase64`) into Snowflake's JSON result format (`rowset`).

Snowflake's JSON rowset is a list of rows, each a list of strings or nulls, with these encodings
(what the Node.js snowflake-sdk's `column.js` and the Python connector's JSON converters parse):
- FIXED: the decimal number as text, with the column's scale ("12", "1.50");
- REAL: a float as text ("1.5", "NaN", "Infinity");
- TEXT, VARIANT, OBJECT, ARRAY: the text itself (JSON text for the semi-structured types);
- BOOLEAN: "1" or "0";
- DATE: days since 1970-01-01 ("19000");
- TIME: seconds since midnight with 9 fractional digits ("3600.000000000");
- TIMESTAMP_NTZ / TIMESTAMP_LTZ: seconds since the epoch with 9 fractional digits;
- TIMESTAMP_TZ: the same, a space, then the offset in minutes plus 1440 ("1600000000.000000000 1440"),
  which the drivers read when the response's `version` is 1;
- BINARY: upper-case hex.
"""

from __future__ import annotations

import base64
import decimal
import math
from typing import Any

import pyarrow as pa

NANOS = 1_000_000_000


def _seconds(total_nanos: int, scale: int = 9) -> str:
    sign = "-" if total_nanos < 0 else ""
    a = abs(total_nanos)
    whole, frac = divmod(a, NANOS)
    if scale <= 0:
        return f"{sign}{whole}"
    digits = f"{frac:09d}"[:scale] if scale <= 9 else f"{frac:09d}" + "0" * (scale - 9)
    return f"{sign}{whole}.{digits}"


def _real(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(float(v))


def _column(arr: pa.Array, sf_type: str, scale: int | None) -> list[str | None]:
    t = arr.type
    n = len(arr)
    if pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        epoch = arr.field(names.index("epoch")).to_pylist()
        fraction = arr.field(names.index("fraction")).to_pylist() if "fraction" in names else [0] * n
        tz = arr.field(names.index("timezone")).to_pylist() if "timezone" in names else None
        valid = arr.is_valid().to_pylist()
        sc = 9 if scale is None else scale
        out: list[str | None] = []
        for i in range(n):
            if not valid[i] or epoch[i] is None:
                out.append(None)
                continue
            s = _seconds(epoch[i] * NANOS + (fraction[i] or 0), sc)
            if tz is not None:
                s = f"{s} {tz[i]}"
            elif sf_type == "timestamp_tz":
                s = f"{s} 1440"
            out.append(s)
        return out

    values = arr.to_pylist() if not (pa.types.is_date(t)) else arr.cast(pa.int32()).to_pylist()
    if sf_type == "time":
        sc = 9 if scale is None else scale
        return [None if v is None else _seconds(int(v), sc) for v in values]
    if sf_type == "date" or pa.types.is_date(t):
        return [None if v is None else str(v) for v in values]
    if sf_type == "boolean" or pa.types.is_boolean(t):
        return [None if v is None else ("1" if v else "0") for v in values]
    if pa.types.is_decimal(t):
        return [None if v is None else format(v, "f") for v in values]
    if pa.types.is_floating(t):
        return [None if v is None else _real(v) for v in values]
    if pa.types.is_integer(t):
        if sf_type == "fixed" and scale:
            q = decimal.Decimal(1).scaleb(-scale)
            return [None if v is None else format(decimal.Decimal(v).scaleb(-scale).quantize(q), "f") for v in values]
        return [None if v is None else str(v) for v in values]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return [None if v is None else bytes(v).hex().upper() for v in values]
    return [None if v is None else _text(v) for v in values]


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.hex().upper()
    return str(v)


def arrow_to_rowset(rowset_base64: str, rowtype: list[dict[str, Any]]) -> list[list[str | None]]:
    if not rowset_base64:
        return []
    reader = pa.ipc.open_stream(base64.b64decode(rowset_base64))
    table = reader.read_all()
    if table.num_rows == 0:
        return []
    columns = []
    for i in range(table.num_columns):
        arr = table.column(i).combine_chunks()
        meta = rowtype[i] if i < len(rowtype) else {}
        sf_type = str(meta.get("type") or "text").lower()
        scale = meta.get("scale")
        # fakesnow's Arrow FIXED columns with a scale come as decimals; integer columns carry
        # the scale in the field metadata only when it is not 0.
        if pa.types.is_integer(arr.type) and sf_type == "fixed":
            fmeta = table.schema.field(i).metadata or {}
            if b"scale" in fmeta and pa.types.is_integer(arr.type):
                # Snowflake's own Arrow FIXED with scale is a scaled integer.
                scale = int(fmeta[b"scale"])
            else:
                scale = 0
        columns.append(_column(arr, sf_type, scale))
    return [list(row) for row in zip(*columns)]


def to_json_result(data: dict[str, Any]) -> None:
    """Rewrites a query response's `data` in place from Arrow to JSON, when it is Arrow."""
    if data.get("queryResultFormat") != "arrow":
        if "rowset" in data and "returned" not in data:
            data["returned"] = len(data["rowset"])
        return
    rowtype = data.get("rowtype") or []
    rows = arrow_to_rowset(data.pop("rowsetBase64", "") or "", rowtype)
    data["rowset"] = rows
    data["queryResultFormat"] = "json"
    data["returned"] = len(rows)
    data["total"] = max(int(data.get("total") or 0), len(rows))
