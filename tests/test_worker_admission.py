"""Unit tests of the domain agent's offset admission (``DomainHandler.admit``), without Kafka.

The table, the consumer's seek, the earliest-offset lookup and the direct gap read are small
fakes: these test our logic (which internal message is applied, skipped, read again or sought
back to). What Kafka and Faust do on a takeover is covered by tests/test_worker_failures.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from services.config import Settings
from services.worker import agent
from services.worker.agent import DomainHandler, OutputSender, position_key
from services.worker.inbound import Inbound, encode_batch
from tests.test_domain_support import DOMAIN, queue, volume

TOPIC = "internal.domain-inputs"
P = 2  # the internal partition the tests use


class Fakes:
    """The shell around a handler: a dict for the table, recorders for seeks, gap reads and
    applied messages (``handle`` is replaced unless ``real_handle``)."""

    def __init__(
        self,
        *,
        position: int | None = None,
        earliest: int | None = 0,
        gap: Any = None,
        earliest_fails: bool = False,
    ) -> None:
        self.table: dict[bytes, bytes] = {}
        if position is not None:
            self.table[position_key(P)] = str(position).encode()
        self.seeks: list[tuple[int, int]] = []
        self.reads: list[tuple[int, int, int]] = []
        self.handled: list[tuple[str, int | None]] = []
        self.sent: list[Any] = []
        self._earliest = earliest
        self._earliest_fails = earliest_fails
        self._gap = gap

    async def rewind(self, partition: int, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def earliest(self, partition: int) -> int:
        if self._earliest_fails:
            raise ConnectionError("broker away")
        assert self._earliest is not None
        return self._earliest

    async def read_gap(
        self, partition: int, start: int, end: int
    ) -> AsyncIterator[tuple[int, bytes | None, bytes | None]]:
        self.reads.append((partition, start, end))
        if isinstance(self._gap, Exception):
            raise self._gap
        records = (
            self._gap(start, end)
            if self._gap is not None
            else [(o, DOMAIN.encode(), encode_batch([])) for o in range(start, end)]
        )
        for record in records:
            if isinstance(record, Exception):  # the read fails after what came before
                raise record
            yield record

    def handler(
        self, *, read_gap: bool = True, earliest: bool = True, real_handle: bool = False
    ) -> DomainHandler:
        sender = cast(OutputSender, self)
        handler = DomainHandler(
            Settings(),
            cast(Any, self.table),
            cast(Any, {}),
            sender,
            cast(Any, None),  # no plan is due in these tests
            self.rewind,
            self.earliest if earliest else None,
            self.read_gap if read_gap else None,
        )
        if not real_handle:

            async def handle(
                domain: str,
                items: list[Inbound],
                partition: int | None = None,
                offset: int | None = None,
            ) -> None:
                self.handled.append((domain, offset))
                handler._applied(partition, offset)

            handler.handle = handle  # type: ignore[method-assign]
        return handler

    async def send_all(self, events: Any) -> None:  # the OutputSender's one call
        self.sent.extend(events)

    def position(self) -> int | None:
        raw = self.table.get(position_key(P))
        return None if raw is None else int(raw)


async def deliver(handler: DomainHandler, offset: int, domain: str = DOMAIN) -> bool:
    """What the agent loop does with one internal message."""
    if await handler.admit(P, offset):
        await handler.handle(domain, [], P, offset)
        return True
    return False


async def test_the_expected_offset_is_applied_and_the_position_moves_on() -> None:
    fakes = Fakes(position=5)
    handler = fakes.handler()
    assert await deliver(handler, 5)
    assert await deliver(handler, 6)
    assert fakes.position() == 7
    assert fakes.seeks == [] and fakes.reads == [] and handler.skipped == 0


async def test_earlier_offsets_are_skipped_as_already_in_the_state() -> None:
    fakes = Fakes(position=5)
    handler = fakes.handler()
    assert not await deliver(handler, 3)
    assert not await deliver(handler, 4)
    assert handler.skipped == 2
    assert fakes.handled == [] and fakes.seeks == [] and fakes.reads == []
    assert fakes.position() == 5, "a redelivery does not move the recorded position"
    assert await deliver(handler, 5)


async def test_a_partition_without_a_recorded_position_starts_from_its_earliest_offset() -> None:
    """A worker that never applied this partition (or one from before the recorded position)
    re-reads it from the start: the messages before the first delivered one are read."""
    fakes = Fakes(position=None, earliest=0)
    handler = fakes.handler()
    assert await deliver(handler, 4)
    assert fakes.reads == [(P, 0, 4)]
    assert fakes.handled == [(DOMAIN, 0), (DOMAIN, 1), (DOMAIN, 2), (DOMAIN, 3), (DOMAIN, 4)]
    assert fakes.position() == 5


async def test_without_an_earliest_lookup_the_first_delivered_message_is_the_start() -> None:
    fakes = Fakes(position=None)
    handler = fakes.handler(earliest=False)
    assert await deliver(handler, 4)
    assert fakes.reads == [] and fakes.position() == 5


async def test_a_later_offset_reads_the_gap_and_applies_it_in_order_before_the_message() -> None:
    fakes = Fakes(position=3)
    handler = fakes.handler()
    assert await deliver(handler, 7)
    assert fakes.reads == [(P, 3, 7)]
    assert [o for _, o in fakes.handled] == [3, 4, 5, 6, 7]
    assert fakes.position() == 8 and handler.gaps_filled == 1
    assert fakes.seeks == [], "no seek of the stream's consumer when the gap could be read"
    # what the stream still delivers of the gap later (e.g. after Faust's own seek) is skipped
    assert not await deliver(handler, 5)
    assert await deliver(handler, 8)


async def test_a_gap_with_offsets_but_no_records_moves_the_position_past_it() -> None:
    """Offsets without a readable record (transaction markers, aborted records) are no gap."""
    fakes = Fakes(position=3, gap=lambda start, end: [(5, DOMAIN.encode(), encode_batch([]))])
    handler = fakes.handler()
    assert await deliver(handler, 7)
    assert [o for _, o in fakes.handled] == [5, 7]
    assert fakes.position() == 8


async def test_a_gap_record_of_another_domain_goes_to_that_domain() -> None:
    fakes = Fakes(position=3, gap=lambda start, end: [(3, b"us", encode_batch([]))])
    handler = fakes.handler()
    assert await deliver(handler, 4)
    assert fakes.handled == [("us", 3), (DOMAIN, 4)]


async def test_a_later_offset_seeks_back_when_the_gap_cannot_be_read() -> None:
    """The fallback: seek the stream's consumer to the recorded offset, skip what the stream
    still has buffered after the gap (no second seek right away), apply once it arrives."""
    fakes = Fakes(position=3, gap=ConnectionError("broker away"))
    handler = fakes.handler()
    assert not await deliver(handler, 4)
    assert fakes.seeks == [(P, 3)]
    assert not await deliver(handler, 11)
    assert not await deliver(handler, 12)
    assert fakes.seeks == [(P, 3)], "buffered messages past the gap do not seek again at once"
    assert handler.rewinds == 1 and handler.skipped == 3
    assert fakes.handled == [] and fakes.position() == 3
    assert await deliver(handler, 3)
    assert await deliver(handler, 4)
    assert fakes.position() == 5


async def test_a_gap_read_failing_halfway_seeks_back_to_what_it_did_not_apply() -> None:
    fakes = Fakes(
        position=3,
        gap=lambda start, end: [(3, DOMAIN.encode(), encode_batch([])), TimeoutError("stuck")],
    )
    handler = fakes.handler()
    assert not await deliver(handler, 6)
    assert fakes.handled == [(DOMAIN, 3)]
    assert fakes.position() == 4
    assert fakes.seeks == [(P, 4)]
    assert handler.gaps_filled == 0


async def test_the_fallback_seeks_again_after_the_retry_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(agent.time, "monotonic", lambda: clock[0])
    fakes = Fakes(position=3)
    handler = fakes.handler(read_gap=False)
    assert not await deliver(handler, 4)
    clock[0] += agent.REWIND_RETRY_S / 2
    assert not await deliver(handler, 5)
    clock[0] += agent.REWIND_RETRY_S
    assert not await deliver(handler, 6)
    assert fakes.seeks == [(P, 3), (P, 3)]
    assert await deliver(handler, 3)
    # after the expected message arrived, a new gap seeks at once
    assert not await deliver(handler, 9)
    assert fakes.seeks[-1] == (P, 4) and len(fakes.seeks) == 3


async def test_records_deleted_by_retention_move_the_position_forward() -> None:
    """Nothing is left to re-read below the earliest offset: start from there."""
    fakes = Fakes(position=3, earliest=10)
    handler = fakes.handler()
    assert await deliver(handler, 10)
    assert fakes.reads == [] and fakes.seeks == []
    assert fakes.position() == 11


async def test_records_deleted_by_retention_then_a_gap_reads_from_the_earliest_offset() -> None:
    fakes = Fakes(position=3, earliest=10)
    handler = fakes.handler()
    assert await deliver(handler, 12)
    assert fakes.reads == [(P, 10, 12)]
    assert [o for _, o in fakes.handled] == [10, 11, 12]


async def test_an_earliest_lookup_failure_assumes_nothing_was_deleted() -> None:
    fakes = Fakes(position=3, earliest_fails=True)
    handler = fakes.handler()
    assert await deliver(handler, 6)
    assert fakes.reads == [(P, 3, 6)]


async def test_forget_reloads_the_position_from_the_table() -> None:
    """After a rebalance another worker may have moved the partition on: the table says."""
    fakes = Fakes(position=3)
    handler = fakes.handler()
    assert await deliver(handler, 3)
    fakes.table[position_key(P)] = b"20"  # written by the other worker, restored from changelog
    handler.forget()
    assert not await deliver(handler, 10)
    assert await deliver(handler, 20)


async def test_a_gap_applied_for_real_stores_each_domain_state_and_the_position() -> None:
    """With the real ``handle``: the gap's batches reach the processor, state and position
    are written to the table."""
    first = encode_batch([Inbound(queue(), "ops.queues", 0, 0)])
    second = encode_batch([Inbound(volume(0, 10), "ops.ticket-volume", 0, 0)])
    fakes = Fakes(
        position=0,
        gap=lambda start, end: [(0, DOMAIN.encode(), first), (1, DOMAIN.encode(), second)],
    )
    handler = fakes.handler(real_handle=True)
    assert await handler.admit(P, 2)
    await handler.handle(DOMAIN, [], P, 2)
    assert fakes.position() == 3
    assert DOMAIN.encode() in fakes.table
    assert handler.handled == 2  # both gap events went through the processor
