"""A 4-bit and an 8-bit model answer a photo end to end: real python-telegram-bot, the stand-in API."""

from __future__ import annotations

import pytest

from adapters.telegram.render import render
from tests.adapters.telegram.botapi_standin import parse_html
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    photo_sizes,
    png,
    running_adapter,
    settle,
    shown_text,
)

pytestmark = pytest.mark.asyncio(loop_scope="function")
pytest.importorskip("bitsandbytes")


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
async def test_a_quantized_model_answers_a_photo(standin, service_factory, quantization: str) -> None:
    async with service_factory(max_new_tokens=12, quantization=quantization) as service:
        async with running_adapter(standin, service, mode="polling") as (adapter, rec):
            sizes = photo_sizes(standin, png())
            await standin.inject(
                standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, photo=sizes, caption="What is this?")
            )
            await settle(standin, adapter)
        assert service.engine.health().quantization.startswith(f"{quantization} (bitsandbytes")
    [message] = rec.handled
    assert len(message.attachments) == 1
    [answer] = rec.answers()
    assert answer.text and shown_text(standin, ALLOWED_USER) == [parse_html(render(answer.text))[0]]
