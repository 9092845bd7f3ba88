"""A 4-bit and an 8-bit model answer a picture through the web chat, over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.adapters.web.conftest import new_thread, running_web
from tests.conftest import picture_bytes

pytest.importorskip("bitsandbytes")


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
async def test_a_quantized_model_answers_a_picture(service_factory: Any, browsers: Any, quantization: str) -> None:
    async with service_factory(quantization=quantization) as service, running_web(service) as adapter:
        async with browsers(adapter.url) as browser:
            thread = new_thread()
            red = picture_bytes(color=(220, 20, 20))
            status, events = await browser.ask(thread, "What colour is this?", files=[("red.png", red, "image/png")])
            assert status == 200 and isinstance(events, list)
            assert [name for name, _ in events][-2:] == ["answer", "done"], events
            answer = next(data for name, data in events if name == "answer")
            assert answer["output_tokens"] > 0
            status, view = await browser.get(f"/api/threads/{thread}")
            assert [t["status"] for t in view["turns"]] == ["done"] and len(view["turns"][0]["images"]) == 1
        assert service.engine.health().quantization.startswith(f"{quantization} (bitsandbytes")
