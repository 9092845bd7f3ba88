"""The conversation service every adapter talks to: questions, pictures and commands per thread."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bot.commands import help_text, parse_command
from bot.earlier_pages import page_follow_up
from bot.erasure import DataRemoval
from bot.feedback import Feedback, vote_entries
from bot.i18n import N_, _, ngettext
from bot.instructions import Instructions
from bot.messages import (
    Answer,
    AnswerDelta,
    Attachment,
    Document,
    IncomingMessage,
    Notice,
    QueuePosition,
    Reply,
    Text,
)
from bot.metrics import BotMetrics, MessageKind, Outcome, RefusalReason
from bot.page_choice import format_pages, requested_pages
from bot.pdf_pages import PdfRenderer
from bot.picture_inputs import InputLimits, KeptFile, PictureInputs, Prepared
from bot.picture_sources import PictureSource
from bot.pictures import CheckedPicture, PictureFiles, PictureRejected
from bot.presets import Preset, found_replies, html_replies, preset_named, table_replies
from bot.prompt import (
    SYSTEM_PROMPT,
    PromptTooLong,
    build_prompt,
    pending_pictures,
    pending_turns,
    reading_status,
)
from bot.store import SessionInfo, Store, TurnInfo, TurnStats
from bot.turn_notes import NoteKind, TurnNote
from bot.videos import is_video
from bot.votes import Vote, VoteResult
from bot.wording import (
    ACK_PICTURES,
    ANSWER_INTERRUPTED,
    CLEARED,
    CLEARED_WHILE_WAITING,
    FIND_NEEDS_A_PICTURE,
    INTERNAL_ERROR,
    MISSING_PICTURE,
    NO_PICTURE,
    PRESENT_FAILED,
    SHUTTING_DOWN,
    STOPPED,
    UNNAMED_PDF,
    engine_sentence,
    file_label,
    forget_done,
    forget_preview,
    pdf_gone,
    pdf_no_such_page,
    status_text,
    too_big,
)
from engine.arch import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, ModelArch
from engine.interface import (
    Engine,
    EngineBusy,
    EngineError,
    GenerationLimits,
    GenerationRequest,
    GenerationStats,
    Queued,
    Started,
    TextPiece,
)
from engine.videos import DEFAULT_VIDEO_BUDGET, DEFAULT_VIDEO_LIMITS, VideoLimits

__all__ = ["ConversationLimits", "Conversations"]

log = logging.getLogger(__name__)

_PLATFORM_NAMES = {"telegram": N_("Telegram"), "slack": N_("Slack"), "web": N_("the web chat"), "console": N_("the terminal chat")}

# Called with the final answer and its stats; yields what the user sees instead of the plain Answer.
Presenter = Callable[[Answer, GenerationStats], AsyncIterator[Reply]]


@dataclass(frozen=True)
class ConversationLimits:
    max_image_bytes: int
    max_image_source_pixels: int
    max_images_per_turn: int
    max_new_tokens: int
    request_timeout_s: float
    context_tokens: int  # the whole prompt, as the engine counts it
    # The engine's resize budget, needed to map Qwen2.5-VL grounding answers (pixels of the resized
    # picture) back to the original.
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    video: VideoLimits = DEFAULT_VIDEO_LIMITS  # screen recordings and GIFs (bot.videos)
    video_tokens: int = DEFAULT_VIDEO_BUDGET.max_tokens  # the visual tokens one video costs at most
    max_pdf_pages: int = 8
    max_tiles: int = 10
    pdf_timeout_s: float = 30.0

    def pixel_budget(self, *, halved: bool = False) -> tuple[int, int]:
        """(min, max) pixels; `halved` as the engine does when it retries after running out of memory."""
        if halved:
            return min(self.min_pixels, self.max_pixels // 2), self.max_pixels // 2
        return self.min_pixels, self.max_pixels


@dataclass
class _InFlight:
    request_id: str
    turn_id: int
    thread: tuple[str, str]  # (platform, thread key)
    done: asyncio.Event


class Conversations:
    """Turns incoming messages into stored turns and engine requests, one active session per thread."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        pictures: PictureFiles,
        limits: ConversationLimits,
        instructions: Instructions | None = None,
        exports_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.pictures = pictures
        self.limits = limits
        self.instructions = instructions
        self.removal = DataRemoval(store.engine, pictures, exports_dir)
        self._accepting = True
        self._locks: dict[str, asyncio.Lock] = {}
        self._inflight: dict[str, _InFlight] = {}  # session id -> its running request
        self._cancelled_turns: set[int] = set()
        self._feedback = Feedback(store)
        self.metrics = BotMetrics(in_progress=lambda: len(self._inflight))
        self._inputs = PictureInputs(
            InputLimits(
                limits.max_image_bytes, limits.max_image_source_pixels, limits.max_pixels, limits.max_pdf_pages,
                limits.max_tiles, limits.video, limits.video_tokens,
            ),
            PdfRenderer(max_pixels=limits.max_pixels, timeout_s=limits.pdf_timeout_s),
        )

    # --- for adapters -------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return self._accepting

    async def claim_delivery(self, platform: str, delivery_id: str) -> bool:
        return await self.store.claim_delivery(platform, delivery_id)

    async def has_conversation(self, platform: str, thread_key: str) -> bool:
        """Whether the thread has an active session (e.g. a Slack thread the bot already answered in)."""
        return bool(await self.store.list_sessions(platform=platform, thread_key=thread_key, limit=1, active_only=True))

    async def record_vote(self, platform: str, thread_key: str, user_id: str, turn_id: int, vote: Vote) -> VoteResult:
        """A user's thumbs up or down on the answer of `turn_id` (`Answer.turn_id`), pressed in `thread_key`.

        One vote per user and answer; a new vote replaces the old. Refused (UNKNOWN_TURN) when the turn
        is not in that thread of that platform, and (NOT_AN_ANSWER) when it has no final answer.
        """
        result = await self._feedback.record_vote(platform, thread_key, user_id, turn_id, vote)
        self.metrics.voted(result)
        return result

    def stop_thread(self, platform: str, thread_key: str) -> None:
        """Mark the thread's running answer as stopped by /clear; called before the task reading it is
        cancelled, so the turn ends as cancelled rather than interrupted."""
        for entry in self._inflight.values():
            if entry.thread == (platform, thread_key):
                self._cancelled_turns.add(entry.turn_id)

    def check_attachment_size(self, size: int | None, *, video: bool = False) -> str | None:
        limit = self.limits.video.max_bytes if video else self.limits.max_image_bytes
        if size is not None and size > limit:
            self.metrics.refused("picture")
            return too_big(size, limit)
        return None

    def refused(self, reason: RefusalReason) -> None:
        """An adapter turned a message away before it reached `handle` (e.g. the sender is not allowed)."""
        self.metrics.refused(reason)

    async def handle(self, message: IncomingMessage) -> AsyncGenerator[Reply, None]:
        """Everything the user should see in answer to `message`, in order."""
        command = parse_command(message.text)
        kind: MessageKind = "command" if command is not None else "picture" if message.attachments else "text"
        self.metrics.received(message.platform, kind)
        if not self._accepting:
            self.metrics.refused("restarting")
            yield Text(_(SHUTTING_DOWN), kind="error")
            return
        if command is not None:
            async for reply in self._command(message, *command):
                yield reply
            return
        async for reply in self._question(message):
            yield reply

    # --- questions ----------------------------------------------------------------------------

    async def _check_all(self, attachments: Sequence[Attachment], text: str = "", *, tiles: bool = True) -> Prepared | str:
        """The message's files as the pictures the model sees (`bot.picture_inputs`), or why it is refused."""
        if len(attachments) > self.limits.max_images_per_turn:
            self.metrics.refused("picture")
            return _("That is {count} pictures; I can look at {limit} at a time.").format(
                count=len(attachments), limit=self.limits.max_images_per_turn
            )
        try:
            prepared = await self._inputs.prepare(attachments, text, tiles=tiles)
        except PictureRejected as exc:
            self.metrics.refused("picture")
            return exc.user_message
        for _problem in prepared.problems:
            self.metrics.refused("picture")
        return prepared

    async def _question(self, message: IncomingMessage) -> AsyncIterator[Reply]:
        prepared = await self._check_all(message.attachments, message.text)
        for reply in _received(prepared, message.attachments):
            yield reply
        if isinstance(prepared, str) or (message.attachments and not prepared.pictures):
            return
        notes = _noted(prepared)
        text = message.text.strip()
        if text and not message.attachments and (wanted := requested_pages(text)):
            earlier = await self._earlier_pages(message, wanted)
            if isinstance(earlier, str):  # the kept PDF cannot be read: the question was about its pages
                yield Text(earlier, kind="error")
                return
            if earlier is not None:
                for line in earlier.notes:
                    yield Notice(line)
                notes += _noted(earlier)
                prepared = earlier
        checked = prepared.pictures
        if not text and not checked:
            yield Text(_("Send a picture or ask a question; /help lists what I can do."))
            return
        await self._keep(checked, prepared.files)
        session = await self.store.active_session(message.platform, message.thread_key, message.user_id)
        hashes = prepared.hashes
        if not text:
            await self.store.add_turn(
                session.id, user_id=message.user_id, text="", image_hashes=hashes, status="attached",
                image_sources=prepared.sources, notes=notes,
            )
            yield Text(_(ACK_PICTURES))
            return
        async with self._turn_lock(session) as refusal:
            if refusal is not None:
                yield Text(refusal, kind="error")
                return
            turn = await self.store.add_turn(
                session.id, user_id=message.user_id, text=text, image_hashes=hashes, image_sources=prepared.sources,
                notes=notes,
            )
            async for reply in self._answer(session, turn):
                yield reply

    async def _keep(self, checked: Sequence[CheckedPicture], files: Sequence[KeptFile] = ()) -> None:
        """Pictures, and the PDFs they are pages of, stored before the turn that refers to them."""
        for picture in checked:
            await self.pictures.save(picture)
            await self.store.record_image(
                picture.sha256,
                mime_type=picture.mime_type,
                width=picture.width,
                height=picture.height,
                size_bytes=len(picture.data),
            )
        for kept in files:
            await self.pictures.save_file(kept.sha256, kept.data)
            await self.store.record_image(kept.sha256, mime_type=kept.mime_type, width=0, height=0, size_bytes=len(kept.data))

    async def _earlier_pages(self, message: IncomingMessage, wanted: tuple[int, ...]) -> Prepared | str | None:
        """Pages a question names of a PDF sent earlier in the conversation (`bot.earlier_pages`), read now
        from the kept file; a line saying why they cannot be read; None when there is nothing to read."""
        session = await self._current(message)
        found = page_follow_up(await self.store.turns(session.id, in_context_only=True), wanted)
        if found is None:
            return None
        pdf = found.pdf
        name = file_label(pdf.name, UNNAMED_PDF)
        notes = (pdf_no_such_page(name, format_pages(found.missing), pdf.total),) if found.missing else ()
        if not found.unread:  # every named page is in the conversation already, or none exists
            # ("the intranet page 404s": a question that merely says "page N" is answered all the same)
            return Prepared((), (), notes=notes)
        try:
            data = await self.pictures.load(pdf.sha256)
        except FileNotFoundError:
            log.info("session %s: PDF %s is not kept; pages %s cannot be read", session.id, pdf.sha256, found.unread)
            return pdf_gone(name, format_pages(found.unread))
        document = pdf.document if found.several else None
        prepared = await self._inputs.earlier_pages(data, pdf.name, found.unread, document=document)
        if prepared.problems:
            self.metrics.refused("picture")
            return prepared.problems[0]
        return replace(prepared, notes=notes + prepared.notes)

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    @asynccontextmanager
    async def _turn_lock(self, session: SessionInfo) -> AsyncIterator[str | None]:
        """Hold the session's lock for one question; yields why it may not go ahead, or None.

        A question that waited behind another may find the bot shutting down, or its thread cleared:
        /clear stops what was sent before it, so that question is not asked in the archived session.
        """
        async with self._lock(session.id):
            if not self._accepting:
                yield _(SHUTTING_DOWN)
            elif (current := await self.store.get_session(session.id)) is None or current.status != "active":
                yield _(CLEARED_WHILE_WAITING)
            else:
                yield None

    async def _answer(
        self, session: SessionInfo, turn: TurnInfo, present: Presenter | None = None
    ) -> AsyncIterator[Reply]:
        """Generate the answer to a stored pending turn; the turn always ends in a final status.

        `present`, when given, turns the final Answer into the replies the user sees (a preset's files
        or picture); the stored answer stays the model's own text.
        """
        history = [t for t in await self.store.turns(session.id, in_context_only=True) if t.id < turn.id]
        shown = list(turn.notes)  # what the user is told besides the answer, kept with the turn
        engine_note: str | None = None
        system = SYSTEM_PROMPT
        if self.instructions is not None:
            system = await self.instructions.system_prompt(session.platform, session.thread_key)
        try:
            prompt = await build_prompt(
                history,
                turn,
                system=system,
                context_tokens=self.limits.context_tokens,
                count=self.engine.count_prompt_tokens,
                load_image=self.pictures.load,
            )
        except FileNotFoundError as exc:
            log.error("session %s: a stored picture is missing: %s", session.id, exc)
            await self.store.finish_turn(turn.id, status="failed", error=f"missing picture: {exc}")
            yield Text(_(MISSING_PICTURE), kind="error")
            return
        except PromptTooLong as exc:
            self.metrics.refused("too_long")
            log.info("session %s turn %s: %s", session.id, turn.id, exc)
            await self.store.finish_turn(turn.id, status="failed", error=str(exc))
            # Set aside with the pictures waiting for it, or every next question would carry them again.
            for waiting in history[len(history) - len(pending_turns(history)):]:
                await self.store.drop_from_context(waiting.id)
            await self.store.drop_from_context(turn.id)
            yield Text(exc.user_message, kind="error")
            return
        if prompt.left_out:
            left_out = ngettext(
                "The oldest exchange of this conversation was left out so the question fits; /clear starts afresh.",
                "The {count} oldest exchanges of this conversation were left out so the question fits; /clear starts afresh.",
                prompt.left_out,
            ).format(count=prompt.left_out)
            shown.append(TurnNote(NoteKind.NOTICE, left_out))
            yield Notice(left_out)
        request = GenerationRequest(
            request_id=str(uuid.uuid4()),
            session_id=session.id,
            turns=prompt.turns,
            limits=GenerationLimits(
                max_new_tokens=self.limits.max_new_tokens, timeout_s=self.limits.request_timeout_s
            ),
        )
        inflight = _InFlight(request.request_id, turn.id, (session.platform, session.thread_key), asyncio.Event())
        self._inflight[session.id] = inflight
        parts: list[str] = []
        started = False
        stats: GenerationStats | None = None
        status: Outcome = "interrupted"
        error: str | None = None
        log.info("session %s turn %s: request %s queued", session.id, turn.id, request.request_id)
        reading = reading_status(prompt.turns[-1], (*pending_turns(history), turn))
        try:
            stream = self.engine.generate(request)
            try:
                async for event in stream:
                    if isinstance(event, Queued):
                        yield QueuePosition(event.position)
                    elif isinstance(event, Started) and not started:
                        started = True
                        yield reading
                    elif isinstance(event, TextPiece):
                        if not started:  # an engine that does not say when it starts (vLLM, SGLang)
                            started = True
                            yield reading
                        parts.append(event.text)
                        yield AnswerDelta(event.text)
                    elif isinstance(event, GenerationStats):
                        stats = event
            finally:
                await stream.aclose()
            if stats is not None and stats.finish_reason == "cancelled":
                status = "cancelled" if turn.id in self._cancelled_turns else "interrupted"
            else:
                status = "done"
        except EngineError as exc:
            status, error = "failed", str(exc)
            if isinstance(exc, EngineBusy):
                self.metrics.refused("busy")
            log.warning("session %s turn %s failed: %s", session.id, turn.id, exc)
            yield Text(engine_sentence(exc.user_message), kind="error")
        except Exception as exc:  # a bug must cost one answer, not the adapter's task
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("session %s turn %s: request %s failed", session.id, turn.id, request.request_id)
            yield Text(_(INTERNAL_ERROR), kind="error")
        finally:
            if status == "interrupted" and turn.id in self._cancelled_turns:
                status = "cancelled"  # /clear stopped it, even if the reader went away before the end
            answer = "".join(parts)
            if status == "done" and stats is not None and stats.note:
                engine_note = engine_sentence(stats.note)
                shown.append(TurnNote(NoteKind.NOTICE, engine_note))
            await self.store.finish_turn(
                turn.id,
                status=status,
                answer=answer if status == "done" else (answer or None),
                error=error,
                stats=_turn_stats(stats),
                notes=shown,
            )
            self._cancelled_turns.discard(turn.id)
            self.metrics.answered(status, stats)
            if self._inflight.get(session.id) is inflight:
                del self._inflight[session.id]
            inflight.done.set()
        if status == "done" and stats is not None:
            if engine_note is not None:
                yield Notice(engine_note)
            final = Answer(
                text="".join(parts).strip(),  # the renderer words an empty answer
                turn_id=turn.id,
                latency_ms=round(stats.total_s * 1000),
                output_tokens=stats.output_tokens,
            )
            if present is None:
                yield final
                return
            try:
                async for reply in present(final, stats):
                    if isinstance(reply, Notice):  # e.g. "no table was found": kept like the others
                        shown.append(TurnNote(NoteKind.NOTICE, reply.text))
                        await self.store.set_notes(turn.id, shown)
                    yield reply
            except Exception:
                log.exception("session %s turn %s: presenting the answer failed", session.id, turn.id)
                yield final
                yield Text(_(PRESENT_FAILED), kind="error")
        elif status == "cancelled":
            yield Text(_(STOPPED))
        elif status == "interrupted":
            yield Text(_(ANSWER_INTERRUPTED), kind="error")

    # --- commands -----------------------------------------------------------------------------

    async def _command(self, message: IncomingMessage, name: str, args: str) -> AsyncIterator[Reply]:
        if name in ("start", "help"):
            yield Text(help_text())
        elif name == "clear":
            yield Text(await self.clear(message.platform, message.thread_key))
        elif name == "name":
            yield Text(await self._rename(message, args))
        elif name == "undo":
            yield Text(await self._undo(message))
        elif name == "retry":
            async for reply in self._retry(message):
                yield reply
        elif name == "export":
            yield await self._export(message)
        elif name == "status":
            yield Text(await self._status(message))
        elif name in ("good", "bad"):
            vote = Vote.UP if name == "good" else Vote.DOWN
            result = await self._feedback.vote_last_answer(message.platform, message.thread_key, message.user_id, vote)
            self.metrics.voted(result)
            yield Text(result.text, kind="info" if result.accepted else "error")
        elif name == "forget":
            yield Text(await self._forget(message, args))
        elif (preset := preset_named(name)) is not None:
            async for reply in self._preset(message, preset, args):
                yield reply
        else:
            yield Text(_("Unknown command /{name}.").format(name=name) + f"\n\n{help_text()}")

    # --- presets --------------------------------------------------------------------------------

    async def _preset(
        self, message: IncomingMessage, preset: Preset, argument: str, retried: Sequence[PictureSource] = ()
    ) -> AsyncIterator[Reply]:
        """A preset question on the picture sent with the command, else the session's last picture;
        asked through the same queue and session as any question. `retried`: the sources of the
        pictures of a preset asked again by /retry (its PDF's pages come back as plain pictures)."""
        # /find marks the picture as sent: a long screenshot stays whole there (the others read tiles)
        prepared = await self._check_all(message.attachments, argument, tiles=preset.name != "find")
        for reply in _received(prepared, message.attachments):
            yield reply
        if isinstance(prepared, str) or (message.attachments and not prepared.pictures):
            return
        notes = _noted(prepared)
        checked = prepared.pictures
        if preset.name == "find" and checked and is_video(checked[-1].data):
            yield Text(_(FIND_NEEDS_A_PICTURE), kind="error")  # boxes are drawn on a still picture
            return
        await self._keep(checked, prepared.files)
        session = await self._current(message)
        if preset.needs_argument and not argument.strip():
            usage = _("Usage: /{name} {usage}, for example {example}").format(
                name=preset.name, usage=_(preset.usage), example=_(preset.example)
            )
            if checked:  # keep the pictures, so the corrected command can use them
                await self.store.add_turn(
                    session.id, user_id=message.user_id, text="", image_hashes=prepared.hashes, status="attached",
                    image_sources=prepared.sources, notes=notes,
                )
                usage += _(" (the picture is kept)")
            yield Text(usage)
            return
        async with self._turn_lock(session) as refusal:
            if refusal is not None:
                yield Text(refusal, kind="error")
                return
            history = await self.store.turns(session.id, in_context_only=True)
            carried = pending_pictures(history)
            own = [picture.sha256 for picture in checked]
            if own:
                target = own[-1]
            else:
                found = next((t.image_hashes[-1] for t in reversed(history) if t.image_hashes), None)
                if found is None:
                    yield Text(_(NO_PICTURE))
                    return
                target = found
                if preset.name == "find" and await self._is_video(target):
                    yield Text(_(FIND_NEEDS_A_PICTURE), kind="error")
                    return
                if target not in carried:
                    # An earlier picture goes into this question again, right next to the instruction.
                    own = [target]
            in_question = [*carried, *own]
            try:
                arch = await self.engine.model_arch()  # the grounding prompt differs by architecture
            except EngineError as exc:
                log.warning("session %s: /%s: the model's architecture is not known: %s", session.id, preset.name, exc)
                if checked:  # keep the pictures, so the same command works once the server is back
                    await self.store.add_turn(
                        session.id, user_id=message.user_id, text="", image_hashes=prepared.hashes, status="attached",
                        image_sources=prepared.sources, notes=notes,
                    )
                yield Text(engine_sentence(exc.user_message), kind="error")
                return
            if preset.needs_argument:  # /find marks one picture: name it when the question has several
                number = len(in_question) - in_question[::-1].index(target)
                text = preset.prompt(arch, argument, picture=number if len(in_question) > 1 else None, language=message.language)
            else:
                text = preset.prompt(arch, argument, pictures=len(in_question), language=message.language)
            command = f"/{preset.name} {argument.strip()}".rstrip()
            turn = await self.store.add_turn(
                session.id, user_id=message.user_id, text=text, image_hashes=tuple(own), command=command,
                image_sources=(prepared.sources or tuple(retried)) if checked else (), notes=notes,
            )
            present = self._presenter(preset, arch, target, argument)
            async for reply in self._answer(session, turn, present):
                yield reply

    async def _is_video(self, sha256: str) -> bool:
        try:
            return is_video(await self.pictures.load(sha256))
        except FileNotFoundError:
            return False  # the answer's presenter says the picture is missing

    def _presenter(self, preset: Preset, arch: ModelArch, target: str, argument: str) -> Presenter | None:
        """What the user gets besides the answer: files for /table and /code, the marked picture for /find."""
        if preset.name == "find":

            async def present_found(answer: Answer, stats: GenerationStats) -> AsyncIterator[Reply]:
                # The engine's only note is about a retry at half the pixel budget after running out of memory.
                min_pixels, max_pixels = self.limits.pixel_budget(halved=stats.note is not None)
                try:
                    data = await self.pictures.load(target)
                except FileNotFoundError:
                    log.error("picture %s is missing from storage", target)
                    data = b""
                replies = await asyncio.to_thread(
                    found_replies, answer, data, arch=arch, thing=argument, min_pixels=min_pixels, max_pixels=max_pixels
                )
                for reply in replies:
                    yield reply

            return present_found
        extras = {"table": table_replies, "code": html_replies}.get(preset.name)
        if extras is None:
            return None

        async def present(answer: Answer, stats: GenerationStats) -> AsyncIterator[Reply]:
            for reply in extras(answer):
                yield reply

        return present

    async def _current(self, message: IncomingMessage) -> SessionInfo:
        return await self.store.active_session(message.platform, message.thread_key, message.user_id)

    async def clear(self, platform: str, thread_key: str) -> str:
        """Archive the thread's session, stop its request and release what the engine holds for it."""
        sessions = await self.store.list_sessions(platform=platform, thread_key=thread_key, active_only=True, limit=1)
        if not sessions:
            return _(CLEARED)
        session = sessions[0]
        inflight = self._inflight.get(session.id)
        if inflight is not None:
            self._cancelled_turns.add(inflight.turn_id)
            await self.engine.cancel(inflight.request_id)
        await self.store.archive_session(session.id)
        await self.engine.release_session(session.id)
        self._locks.pop(session.id, None)
        log.info("session %s archived by /clear", session.id)
        return _(CLEARED)

    async def _rename(self, message: IncomingMessage, title: str) -> str:
        title = " ".join(title.split())[:200]
        if not title:
            return _("Usage: /name TITLE")
        session = await self._current(message)
        await self.store.rename_session(session.id, title)
        return _("This conversation is now called \"{title}\".").format(title=title)

    async def _undo(self, message: IncomingMessage) -> str:
        session = await self._current(message)
        turns = [t for t in await self.store.turns(session.id, in_context_only=True) if t.status != "pending"]
        if not turns:
            return _("Nothing to undo.")
        last = turns[-1]
        await self.store.drop_from_context(last.id)
        if last.user_text:
            return _("Removed \"{text}\" from the conversation.").format(text=_clip(last.user_text))
        return _("Removed the last pictures from the conversation.")

    async def _retry(self, message: IncomingMessage) -> AsyncIterator[Reply]:
        session = await self._current(message)
        if session.id in self._inflight:
            yield Text(_("I am still answering; wait for the answer or /clear to stop it."))
            return
        async with self._turn_lock(session) as refusal:
            if refusal is not None:
                yield Text(refusal, kind="error")
                return
            turns = [t for t in await self.store.turns(session.id, in_context_only=True) if t.user_text]
            if not turns:
                yield Text(_("There is no question to retry yet."))
                return
            last = turns[-1]
            try:
                pictures = tuple([Attachment(await self.pictures.load(sha)) for sha in last.image_hashes])
            except FileNotFoundError as exc:
                log.error("session %s: a stored picture is missing: %s", session.id, exc)
                yield Text(_(MISSING_PICTURE), kind="error")
                return
            await self.store.drop_from_context(last.id)
            if last.command is None:
                turn = await self.store.add_turn(
                    session.id, user_id=message.user_id, text=last.user_text, image_hashes=last.image_hashes,
                    image_sources=last.image_sources,
                )
                async for reply in self._answer(session, turn):
                    yield reply
                return
        # A preset is asked again as a preset, so its files or its marked picture come back too.
        parsed = parse_command(last.command)
        preset = preset_named(parsed[0]) if parsed else None
        if preset is None or parsed is None:
            yield Text(_("{command} can no longer be retried; please send it again.").format(command=last.command), kind="error")
            return
        async for reply in self._preset(replace(message, attachments=pictures), preset, parsed[1], last.image_sources):
            yield reply

    async def _export(self, message: IncomingMessage) -> Document:
        session = await self._current(message)
        data = await self.export_session(session.id)
        return Document(
            filename=f"vlmbot-session-{session.id[:8]}.json",
            data=data,
            mime_type="application/json",
            caption=_("This conversation as JSON."),
        )

    async def export_session(self, session_id: str) -> bytes:
        session = await self.store.get_session(session_id)
        if session is None:
            raise KeyError(session_id)
        turns = await self.store.turns(session_id)
        votes = await self.store.votes_in_session(session_id)
        body = {
            "session": session.id,
            "name": session.title,
            "platform": session.platform,
            "thread": session.thread_key,
            "status": session.status,
            "model": next((t.model for t in reversed(turns) if t.model), self.engine.model_name),
            "created_at": session.created_at.isoformat(),
            "turns": [
                {
                    "id": t.id,
                    "timestamp": t.created_at.isoformat(),
                    "image_hashes": list(t.image_hashes),
                    # the PDFs and long screenshots behind image_hashes: each file's hash and its pages' or tiles'
                    "sources": [source.to_json() for source in t.image_sources],
                    "user_input": t.command or t.user_text,
                    "prompt": t.user_text if t.command else None,
                    "model_output": t.answer,
                    # the notices and refused-file lines the user was shown with it, as shown (bot.turn_notes)
                    "notes": [note.to_json() for note in t.notes],
                    "status": t.status,
                    "in_context": t.in_context,
                    "latency_ms": t.latency_ms,
                    "queue_wait_ms": t.queue_wait_ms,
                    "ttft_ms": t.ttft_ms,
                    "prompt_tokens": t.prompt_tokens,
                    "output_tokens": t.output_tokens,
                    "model": t.model,
                    "feedback": vote_entries(votes.get(t.id, ())),
                }
                for t in turns
            ],
        }
        return json.dumps(body, indent=2, ensure_ascii=False).encode()

    async def _forget(self, message: IncomingMessage, argument: str) -> str:
        """/forget says what of the user's would go on this platform; /forget confirm erases it."""
        where = _(_PLATFORM_NAMES[message.platform]) if message.platform in _PLATFORM_NAMES else message.platform
        argument = argument.strip().lower()
        if argument not in ("", "confirm"):
            return _("/forget shows what of yours would be erased; /forget confirm erases it.")
        plan = await self.removal.plan_user(message.platform, message.user_id)
        if not (plan.turns or plan.sessions or plan.user_rows):
            return _("Nothing of yours is stored from {where}.").format(where=where)
        if not argument:
            return forget_preview(where, plan.turns, plan.conversations, plan.files, plan.files_kept.total, plan.user_rows)
        for inflight in list(self._inflight.values()):
            if inflight.turn_id in plan.turn_ids:  # an answer to a question about to go: stop it
                self._cancelled_turns.add(inflight.turn_id)
                await self.engine.cancel(inflight.request_id)
        removed = await self.removal.erase_user(message.platform, message.user_id)
        for session_id in removed.touched_sessions:
            await self.engine.release_session(session_id)  # its KV cache holds the erased text
        log.info("%s:%s erased their data with /forget", message.platform, message.user_id)
        return forget_done(removed.turns, removed.conversations, removed.files, removed.user_rows)

    async def _status(self, message: IncomingMessage) -> str:
        health = self.engine.health()
        session = await self._current(message)
        inflight = self._inflight.get(session.id)
        position = None if inflight is None else self.engine.queue_position(inflight.request_id) or 0
        return status_text(position, health)

    # --- lifecycle ----------------------------------------------------------------------------

    async def drain(self, grace_s: float) -> None:
        """Refuse new messages, let in-flight answers finish within `grace_s`, then interrupt the rest."""
        self._accepting = False
        pending = [entry.done.wait() for entry in self._inflight.values()]
        if pending:
            log.info("waiting up to %.0f s for %d answer(s) in flight", grace_s, len(pending))
            done, not_done = await asyncio.wait([asyncio.ensure_future(p) for p in pending], timeout=grace_s)
            for future in not_done:
                future.cancel()
        for entry in list(self._inflight.values()):
            await self.engine.cancel(entry.request_id)
        remaining = [entry.done.wait() for entry in self._inflight.values()]
        if remaining:
            await asyncio.wait([asyncio.ensure_future(r) for r in remaining], timeout=5)


def _received(prepared: Prepared | str, attachments: Sequence[Attachment]) -> list[Reply]:
    """What a question or a preset says first about the message's files (`_check_all`): why they are
    refused, the files left out (the rest goes on) and, when anything can be read, what was read of each."""
    if isinstance(prepared, str):
        return [Text(prepared, kind="error")]
    replies: list[Reply] = [Text(line, kind="error") for line in prepared.problems]
    if attachments and not prepared.pictures:
        return replies  # nothing of what was sent can be read: the question was about it
    return replies + [Notice(line) for line in prepared.notes]


def _noted(prepared: Prepared) -> tuple[TurnNote, ...]:
    """What `_received` told the user about the files of a message that goes on, as notes of its turn."""
    return tuple(TurnNote(NoteKind.REFUSED, line) for line in prepared.problems) + tuple(
        TurnNote(NoteKind.NOTICE, line) for line in prepared.notes
    )


def _turn_stats(stats: GenerationStats | None) -> TurnStats:
    if stats is None:
        return TurnStats()
    return TurnStats(
        queue_wait_ms=round(stats.queue_wait_s * 1000),
        ttft_ms=None if stats.time_to_first_token_s is None else round(stats.time_to_first_token_s * 1000),
        latency_ms=round(stats.total_s * 1000),
        prompt_tokens=stats.prompt_tokens,
        output_tokens=stats.output_tokens,
        model=stats.model,
    )


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
