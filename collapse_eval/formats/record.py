"""One line of records.jsonl (docs/formats.md#recordsjsonl) as a msgspec Struct.

``RECORD_DECODER`` decodes a line straight into a ``RecordLine`` in C, checking the
types, the suite and the non-empty strings on the way: several times faster than
``json.loads`` plus checks in Python, which is what `compare` spends most of its time on
with a million records per run. A line it refuses is read again by
``records.check_record_json``, which words the problem (file:line: field: what to do);
so the decoder may be stricter than that check (a ``task_type`` that is not a string
takes the slower road) but never laxer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = ["RECORD_DECODER", "RecordLine"]

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class RecordLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One (suite, task, item, metric) outcome; pairing key (suite, task, item_id, metric)."""

    suite: Literal["domain", "general"]
    task: NonEmpty
    item_id: NonEmpty
    metric: NonEmpty
    score: Annotated[
        float, msgspec.Meta(description="0/1 for binary metrics, else on a 0..1 scale")
    ]
    schema_version: Literal[1] = 1
    task_type: str | None = None
    output_format: str | None = None
    format_ok: bool | None = None
    prediction: str | None = None
    reference: Any = None
    prompt_hash: str | None = None
    doc_hash: Annotated[
        str | None,
        msgspec.Meta(
            description="extension: hash of the source document; differing hashes refuse to pair"
        ),
    ] = None
    cluster: Annotated[
        str | None,
        msgspec.Meta(
            description="extension: cluster id (e.g. one dialogue) for clustered standard errors"
        ),
    ] = None
    metadata: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(description="extension: the domain item's metadata, carried through"),
    ] = None


RECORD_DECODER = msgspec.json.Decoder(RecordLine)
