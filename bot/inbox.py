"""Where every platform's messages enter the core, in order, and leave as rendered replies.

`submit` takes a `Delivery` and the `Transport` its reply goes to, and returns at once:
1. The access policy (`bot.access`) judges the sender. A refused sender who addressed the bot gets
   one line, once per message however often the platform redelivers it, and the refusal is counted
   (`bot.metrics`); nothing else happens.
2. The message joins its thread's lane (`bot.lanes`), so it waits for the one before it. /clear first
   stops what runs and what waits in the thread; /status, /help and /start are answered at once,
   beside the lane.
3. When its turn comes: the language the bot speaks to the sender is decided (`language_of`: the
   one place, VLMBOT_LANGUAGE or the user's) and everything said for the message is in it
   (`bot.i18n.speaking`); the parts of a message delivered in pieces are gathered; a follow-up is kept
   only in a thread the bot takes part in; the delivery is claimed (exactly-once, only now that access
   is checked); files are checked and fetched; and the conversation's replies are rendered
   (`bot.render`) on the transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace

from bot.access import AccessPolicy, policy_for
from bot.commands import parse_command
from bot.config import Settings
from bot.conversations import Conversations
from bot.i18n import _, speaking
from bot.incoming import Addressing, Delivery, FetchFailed, FileFetcher, IncomingFile, LanguageLookup, Sender
from bot.lanes import LaneKey, Lanes, Ticket
from bot.language import Language, choose
from bot.messages import Attachment, IncomingMessage
from bot.render import Renderer, RenderOptions
from bot.transport import TextKind, Transport, TransportError
from bot.wording import FAILED, UNNAMED_PDF, file_label, not_pictures, pdf_over_limit, refusal

__all__ = ["Inbox"]

log = logging.getLogger(__name__)

READ_ONLY = frozenset({"status", "help", "start"})  # answered at once, even while the thread's answer runs


class _Recent:
    """A bounded set of recently seen keys."""

    def __init__(self, size: int = 10_000) -> None:
        self._keys: OrderedDict[object, None] = OrderedDict()
        self._size = size

    def add(self, key: object) -> bool:
        """True when `key` is new."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._keys


@dataclass
class _Job:
    delivery: Delivery
    transport: Transport
    fetcher: FileFetcher | None
    languages: LanguageLookup | None = None
    claimed: asyncio.Future[bool] | None = None  # claimed ahead of its turn (/clear)


class Inbox:
    """One per service; adapters submit to it and never talk to `Conversations` about messages."""

    def __init__(self, conversations: Conversations, settings: Settings, *, renderer: Renderer | None = None) -> None:
        self.conversations = conversations
        self._settings = settings
        self._renderer = renderer or Renderer(
            RenderOptions(code_file_chars=settings.code_file_chars, queue_notice_delay_s=settings.queue_notice_delay_s)
        )
        self._lanes = Lanes()
        self._policies: dict[str, AccessPolicy] = {}
        self._refused = _Recent()
        self._threads = _Recent()  # threads the bot answered in (the store knows those with a conversation)

    # --- access -----------------------------------------------------------------------------------

    def require_access(self, platform: str) -> None:
        """Raise AccessConfigError now, at start-up, when the platform's allowlists are unusable."""
        self._policy(platform)

    def admits(self, delivery: Delivery) -> bool:
        """Whether the sender may use the bot (for an adapter's own platform work before submitting)."""
        return self._policy(delivery.platform).allows(delivery.sender)

    async def language_of(self, sender: Sender, lookup: LanguageLookup | None = None) -> Language:
        """What the bot speaks to `sender`, the one place that decides: VLMBOT_LANGUAGE when it forces a
        language, else the user's (as the event says, else as `lookup` finds), else English."""
        known = sender.language
        if known is None and lookup is not None and self._settings.language == "auto":
            try:
                known = await lookup.language(sender)
            except Exception:  # a broken lookup costs the user's language, not their answer
                log.exception("%s: looking up the language of user %s failed", type(lookup).__name__, sender.user_id)
        return choose(self._settings.language, known)

    def _policy(self, platform: str) -> AccessPolicy:
        if platform not in self._policies:
            self._policies[platform] = policy_for(self._settings, platform)
        return self._policies[platform]

    # --- messages ---------------------------------------------------------------------------------

    def submit(
        self,
        delivery: Delivery,
        transport: Transport,
        fetcher: FileFetcher | None = None,
        *,
        languages: LanguageLookup | None = None,
    ) -> Ticket:
        """Queue the message; the ticket ends when its reply has been rendered (or it was dropped)."""
        key: LaneKey = (delivery.platform, delivery.thread_key)
        job = _Job(delivery, transport, fetcher, languages)
        if not self.admits(delivery):
            return self._refuse(key, job)
        if delivery.addressing is Addressing.OVERHEARD and delivery.group is None:
            return self._lanes.done(key)
        command = parse_command(delivery.text)
        name = command[0] if command is not None else None
        if name in READ_ONLY:
            return self._lanes.spawn(key, lambda: self._run(job), job)
        if name == "clear":
            ahead = self._lanes.jobs(key)
            job.claimed = asyncio.get_running_loop().create_future()
            ticket = self._lanes.push(key, lambda: self._run(job), job)
            self._lanes.spawn(key, lambda: self._preempt(job, ahead))
            return ticket
        return self._lanes.push(key, lambda: self._run(job), job)

    async def clear(self, platform: str, thread_key: str) -> str:
        """/clear from outside a message (the web chat's button): stop the thread's work, then clear."""
        self._stop((platform, thread_key), self._lanes.jobs((platform, thread_key)))
        return await self.conversations.clear(platform, thread_key)

    def _refuse(self, key: LaneKey, job: _Job) -> Ticket:
        delivery = job.delivery
        once = delivery.group or delivery.delivery_id
        if delivery.addressing is Addressing.DIRECT and (once is None or self._refused.add((key[0], once))):
            sender = delivery.sender
            log.info("%s: refused user %s in chat %s (team %s)", key[0], sender.user_id, sender.chat_id, sender.team_id)
            self.conversations.refused("access")  # counted once per message, on every platform
            return self._lanes.spawn(key, lambda: self._refusal(job))
        return self._lanes.done(key)

    async def _refusal(self, job: _Job) -> None:
        with speaking(await self.language_of(job.delivery.sender, job.languages)):
            await self._say(job.transport, refusal(job.delivery.sender.user_id), TextKind.INFO)

    async def _preempt(self, job: _Job, ahead: list[Ticket]) -> None:
        assert job.claimed is not None
        try:
            fresh = await self._claim(job.delivery)
            job.claimed.set_result(fresh)
            if fresh:
                self._stop((job.delivery.platform, job.delivery.thread_key), ahead)
        finally:
            if not job.claimed.done():  # the claim failed: the /clear job ends with it
                job.claimed.cancel()

    def _stop(self, key: LaneKey, tickets: list[Ticket]) -> None:
        """/clear: the running answer is recorded as cancelled, then it and everything waiting are stopped."""
        self.conversations.stop_thread(*key)
        for ticket in tickets:
            if ticket.running:
                log.info("%s: the answer in %s was stopped by /clear", *key)
            ticket.cancel()

    async def _claim(self, delivery: Delivery) -> bool:
        if delivery.delivery_id is None:
            return True
        if await self.conversations.claim_delivery(delivery.platform, delivery.delivery_id):
            return True
        log.info("%s: delivery %s was already handled; ignoring it", delivery.platform, delivery.delivery_id)
        return False

    # --- one message's turn -----------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        language = await self.language_of(job.delivery.sender, job.languages)
        with speaking(language):  # everything said for this message
            await self._turn(job, language)

    async def _turn(self, job: _Job, language: Language) -> None:
        key: LaneKey = (job.delivery.platform, job.delivery.thread_key)
        try:
            parts = [job, *await self._gather(key, job)] if job.delivery.group is not None else [job]
            merged = _merge([p.delivery for p in parts])
            if merged.addressing is Addressing.OVERHEARD:
                return  # an album nobody asked the bot about
            if merged.addressing is Addressing.FOLLOW_UP and not await self._takes_part(key):
                return
            fresh = [p for p in parts if await (p.claimed if p.claimed is not None else self._claim(p.delivery))]
            if not fresh:
                return
            message = await self._message(_merge([p.delivery for p in fresh]), job.fetcher, job.transport, language)
            if message is None:
                return
            self._threads.add(key)
            replies = self.conversations.handle(message)
            try:
                await self._renderer.render(replies, job.transport)
            finally:
                await replies.aclose()
        except TransportError as exc:
            if exc.gone:
                log.info("%s: cannot write in %s any more: %s", key[0], key[1], exc)
                return
            log.warning("%s: answering in %s failed: %s", key[0], key[1], exc)
            await self._report(job.transport, key)
        except Exception:  # a bug costs one answer, and the thread's next message still runs
            log.exception("%s: answering in %s failed", key[0], key[1])
            await self._report(job.transport, key)

    async def _gather(self, key: LaneKey, first: _Job) -> list[_Job]:
        """The other parts of `first`'s message, once no new part has come for the group's wait."""
        group, wait = first.delivery.group, first.delivery.group_wait_s

        def parts() -> list[Ticket]:
            return [t for t in self._lanes.waiting(key) if isinstance(t.payload, _Job) and t.payload.delivery.group == group]

        loop = asyncio.get_running_loop()
        seen, deadline = len(parts()), loop.time() + wait
        while (remaining := deadline - loop.time()) > 0 and await self._lanes.arrival(key, remaining):
            if len(parts()) > seen:  # another part: wait again (other messages of the thread do not count)
                seen, deadline = len(parts()), loop.time() + wait
        taken = parts()
        for ticket in taken:
            self._lanes.withdraw(ticket)
        return [ticket.payload for ticket in taken]

    async def _takes_part(self, key: LaneKey) -> bool:
        return key in self._threads or await self.conversations.has_conversation(*key)

    async def _message(
        self, delivery: Delivery, fetcher: FileFetcher | None, transport: Transport, language: Language
    ) -> IncomingMessage | None:
        """The message with its pictures fetched; None when the user was told why it cannot be asked."""
        pictures = [f for f in delivery.files if f.readable]
        others = [f.name for f in delivery.files if not f.readable]
        if others:
            await self._say(transport, not_pictures([_(name) for name in others]), TextKind.INFO)  # "the sticker": marked N_
            if not pictures and not delivery.attachments:
                return None
        if pictures and fetcher is None:
            raise RuntimeError(f"{delivery.platform}: files to fetch but no fetcher")
        skipped: list[str] = []  # a PDF too large is left out with its line; the rest of the message goes on
        for file in pictures:  # every size is checked before anything is downloaded
            assert fetcher is not None
            problem = fetcher.check(file) or self._size_problem(file, file.size)
            if problem:
                await self._say(transport, problem, TextKind.ERROR)
                if not file.is_pdf:
                    return None
                skipped.append(file.ref)
        attachments = list(delivery.attachments)
        for file in pictures:
            assert fetcher is not None
            if file.ref in skipped:
                continue
            try:
                data = await fetcher.fetch(file)
            except FetchFailed as exc:
                await self._say(transport, exc.user_message, TextKind.ERROR)
                return None
            if problem := self._size_problem(file, len(data)):
                await self._say(transport, problem, TextKind.ERROR)
                if not file.is_pdf:
                    return None
                skipped.append(file.ref)
                continue
            attachments.append(Attachment(data, file.name or None, file.mime_type))
        if skipped and not attachments:
            return None
        sender = delivery.sender
        return IncomingMessage(
            delivery.platform,
            delivery.thread_key,
            sender.user_id,
            delivery.text,
            tuple(attachments),
            sender.name,
            language=language,
        )

    def _size_problem(self, file: IncomingFile, size: int | None) -> str | None:
        problem = self.conversations.check_attachment_size(size, video=file.is_video)
        if problem and file.is_pdf and size is not None:  # the same limit, worded for a PDF
            return pdf_over_limit(file_label(file.name, UNNAMED_PDF), size, self._settings.max_image_bytes)
        return problem

    async def _say(self, transport: Transport, text: str, kind: TextKind) -> None:
        await self._renderer.say(transport, text, kind)

    async def _report(self, transport: Transport, key: LaneKey) -> None:
        try:
            await self._say(transport, _(FAILED), TextKind.ERROR)
        except TransportError as exc:
            log.warning("%s: could not report the failure in %s: %s", key[0], key[1], exc)

    # --- lifecycle --------------------------------------------------------------------------------

    def busy(self, platform: str | None = None) -> bool:
        return self._lanes.busy(platform)

    async def idle(self, platform: str | None = None) -> None:
        """Return once every message of `platform` (all, for None) submitted so far is fully handled."""
        await self._lanes.idle(platform)

    async def close(self, platform: str | None = None, grace_s: float = 0.0) -> None:
        """Let the platform's replies finish for up to `grace_s` seconds, then stop the rest."""
        await self._lanes.close(platform, grace_s)


def _merge(deliveries: list[Delivery]) -> Delivery:
    """Parts of one message -> one message: the first text, every file, addressed if any part is."""
    first = deliveries[0]
    if len(deliveries) == 1:
        return first
    kinds = {d.addressing for d in deliveries}
    addressing = next(a for a in Addressing if a in kinds)  # DIRECT before FOLLOW_UP before OVERHEARD
    return replace(
        first,
        text=next((d.text for d in deliveries if d.text.strip()), ""),
        files=tuple(f for d in deliveries for f in d.files),
        attachments=tuple(a for d in deliveries for a in d.attachments),
        addressing=addressing,
    )
