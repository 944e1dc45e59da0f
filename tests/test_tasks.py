"""augury.tasks: cancelling a background task and waiting for it."""

from __future__ import annotations

import asyncio

import pytest

from augury.tasks import cancel_and_wait


def test_cancel_and_wait() -> None:
    async def scenario() -> None:
        cleaned: list[str] = []

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                cleaned.append("forever")

        task = asyncio.create_task(forever())
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        assert task.cancelled() and cleaned == ["forever"]
        await cancel_and_wait(None)

        async def fails() -> None:
            raise ValueError("broken worker")

        failed = asyncio.create_task(fails())
        await asyncio.sleep(0)
        with pytest.raises(ValueError, match="broken worker"):
            await cancel_and_wait(failed)

    asyncio.run(scenario())
