"""The Agents & AI Apps surface through slack-bolt's AsyncAssistant: greeting and four suggested
prompts when a thread starts, a status while the answer is worked on, a title from the first question."""

from __future__ import annotations

from adapters.slack.assistant import GREETING, SUGGESTED
from bot.wording import queued, reading
from tests.hooks import forced_answer

ANSWER = "The dialog says the disk is full: free some space and try again."


async def test_a_new_assistant_thread_is_greeted_with_four_suggested_prompts(make_bot) -> None:
    async with make_bot(max_new_tokens=128) as bot:
        slack = bot.slack
        event = slack.assistant_thread_started(user="U0ALICE", channel="D0ALICE")
        thread_ts = event["assistant_thread"]["thread_ts"]
        await bot.deliver(event)
        await bot.settle()
        assert max(bot.acks) < 3
        (greeting,) = slack.bot_messages("D0ALICE", thread_ts)
        assert greeting.text == GREETING
        (offered,) = slack.suggested_prompts
        assert (offered.channel_id, offered.thread_ts) == ("D0ALICE", thread_ts)
        assert len(offered.prompts) == 4
        assert [message.split(" ")[0] for _, message in offered.prompts] == [f"/{name}" for name, _ in SUGGESTED]


async def test_an_assistant_thread_shows_its_queue_position_streams_and_is_titled(make_bot) -> None:
    """One decoding slot: Bob's slow answer runs while Alice's question waits, and her thread says so."""
    async with make_bot(max_new_tokens=128, batch_size=1, queue_notice_delay_s=0.0) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=2, delay=0.05)
        busy = slack.assistant_thread_started(user="U0BOB", channel="D0BOB")
        started = slack.assistant_thread_started(user="U0ALICE", channel="D0ALICE")
        thread_ts = started["assistant_thread"]["thread_ts"]
        await bot.deliver(busy)
        await bot.deliver(started)
        await bot.settle()
        await bot.deliver(slack.message_event(
            "D0BOB", "first?", user="U0BOB", thread_ts=busy["assistant_thread"]["thread_ts"], channel_type="im"
        ))
        await slack.wait_for(lambda: slack.streams)
        question = slack.message_event("D0ALICE", "What does   this dialog\nmean?", thread_ts=thread_ts, channel_type="im")
        await bot.deliver(question)
        await bot.settle()
        title = slack.titles[-1]
        assert (title.channel_id, title.thread_ts, title.title) == ("D0ALICE", thread_ts, "What does this dialog mean?")
        shown = [s.status for s in slack.statuses if s.thread_ts == thread_ts]
        assert queued(1) in shown and shown[-1] == ""  # shown while waiting, cleared by the answer
        assert slack.thread_status("D0ALICE", thread_ts) is None
        (stream,) = [s for s in slack.streams if s.channel == "D0ALICE"]
        assert stream.thread_ts == thread_ts and stream.text == ANSWER and stream.state == "stopped"
        (turn,) = await bot.turns(f"D0ALICE/{thread_ts}")
        assert turn.user_text == "What does this dialog\nmean?"  # runs of spaces collapse, as for every message
        # a second question does not rename the thread
        await bot.deliver(slack.message_event("D0ALICE", "and now?", thread_ts=thread_ts, channel_type="im"))
        await bot.settle()
        assert [t.title for t in slack.titles] == ["first?", "What does this dialog mean?"]


async def test_the_context_changing_is_acknowledged_and_ignored(make_bot) -> None:
    async with make_bot(max_new_tokens=128) as bot:
        slack = bot.slack
        started = slack.assistant_thread_started(user="U0ALICE", channel="D0ALICE")
        await bot.deliver(started)
        await bot.settle()
        thread_ts = started["assistant_thread"]["thread_ts"]
        await bot.deliver(slack.assistant_thread_context_changed("D0ALICE", thread_ts, context_channel="C0HELP"))
        await bot.settle()
        assert max(bot.acks) < 3
        assert len(slack.bot_messages("D0ALICE", thread_ts)) == 1  # the greeting only


async def test_an_assistant_thread_says_it_reads_the_picture_before_the_answer_streams(make_bot, red_png: bytes) -> None:
    """The engine says when it starts reading the prompt: the thread's status names the picture, then
    the answer's stream replaces it."""
    async with make_bot(max_new_tokens=128) as bot:
        slack, service = bot.slack, bot.service
        service.engine.generate_hook = forced_answer(service, ANSWER, piece=2, delay=0.05)
        started = slack.assistant_thread_started(user="U0ALICE", channel="D0ALICE")
        thread_ts = started["assistant_thread"]["thread_ts"]
        await bot.deliver(started)
        await bot.settle()
        shot = slack.host_file(red_png, "error.png", "image/png")
        await bot.deliver(slack.message_event("D0ALICE", "what is this?", thread_ts=thread_ts, channel_type="im", files=[shot]))
        await bot.settle()
        order = [r.method for r in slack.requests if r.method in ("assistant.threads.setStatus", "chat.startStream")]
        shown = [s.status for s in slack.statuses if s.thread_ts == thread_ts]
        assert shown == [reading(1), ""]  # no queue: read at once, cleared by the answer
        assert order.index("assistant.threads.setStatus") < order.index("chat.startStream")
        (stream,) = [s for s in slack.streams if s.channel == "D0ALICE"]
        assert stream.text == ANSWER and stream.state == "stopped"
