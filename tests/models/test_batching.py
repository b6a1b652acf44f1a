from __future__ import annotations

import asyncio

import pytest

from tunesafe.models.batching import MicroBatcher


def test_concurrent_submits_share_batches_and_keep_order() -> None:
    seen: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        seen.append(items)
        return [i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=4, max_wait_s=0.05)

    async def main() -> list[list[int]]:
        return list(await asyncio.gather(*(batcher.submit([i]) for i in range(10))))

    results = asyncio.run(main())
    assert results == [[i * 10] for i in range(10)]
    assert sorted(i for batch in seen for i in batch) == list(range(10))
    assert max(len(b) for b in seen) == 4 and len(seen) < 10


def test_a_failing_batch_fails_its_callers_and_the_batcher_recovers() -> None:
    def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("boom")
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=2, max_wait_s=0.0)

    async def main() -> list[int]:
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit([13])
        return await batcher.submit([1, 2, 3])

    assert asyncio.run(main()) == [1, 2, 3]
    assert asyncio.run(batcher.submit([7])) == [7]  # a second event loop gets its own worker
