// The vlmbot web chat: sessions sidebar, pictures (attach, drop, paste, re-attach), streamed answers,
// rename / remove a turn / export / clear, presets, and the operator's read-only view of all sessions.
"use strict";

(() => {
  const { renderMarkdown, escapeHtml } = window.vlmMarkdown;
  const $ = (id) => document.getElementById(id);

  // The page's own words in the browser's language: /api/me sends them (adapters/web/page_words.py).
  // t(english, {name: value}) fills "{name}" placeholders; unknown words stay English.
  function t(text, values) {
    let out = (state.me && state.me.words && state.me.words[text]) || text;
    for (const [name, value] of Object.entries(values || {})) out = out.split(`{${name}}`).join(String(value));
    return out;
  }

  // index.html marks its words: data-i18n (the element's own text), data-i18n-attrs="placeholder title ...".
  const englishTexts = new WeakMap();
  function translatePage() {
    document.documentElement.lang = (state.me && state.me.language) || "en";
    window.vlmMarkdown.labels.copy = t("Copy");
    for (const el of document.querySelectorAll("[data-i18n]")) {
      const node = Array.from(el.childNodes).find((n) => n.nodeType === Node.TEXT_NODE && n.data.trim());
      if (!node) continue;
      if (!englishTexts.has(node)) englishTexts.set(node, node.data.trim());
      node.data = t(englishTexts.get(node));
    }
    for (const el of document.querySelectorAll("[data-i18n-attrs]")) {
      if (!englishTexts.has(el)) {
        const english = {};
        for (const attr of el.dataset.i18nAttrs.split(" ")) english[attr] = el.getAttribute(attr) || "";
        englishTexts.set(el, english);
      }
      for (const [attr, english] of Object.entries(englishTexts.get(el))) el.setAttribute(attr, t(english));
    }
  }

  const state = {
    me: null,
    sessions: [],
    mode: "mine", // or "all" (operator)
    thread: null, // the chat new questions go to
    view: null, // {session, turns, readOnly, admin}
    attachments: [], // {file, url, name} or {ref: "SESSION/SHA", url, name}
    notes: {}, // thread -> command replies shown after the stored turns
    extras: {}, // turn id -> what the stream showed beyond the stored answer (files, notes, final text)
    controller: null,
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET") init.headers["X-CSRF-Token"] = state.me ? state.me.csrf : "";
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (!response.ok) throw new ApiError(response.status, await errorText(response));
    return response;
  }

  async function errorText(response) {
    try {
      return (await response.json()).error || response.statusText;
    } catch (_) {
      return response.statusText || `HTTP ${response.status}`;
    }
  }

  const getJson = async (path) => (await api("GET", path)).json();

  let toastTimer = null;
  function toast(message) {
    const el = $("toast");
    el.textContent = message;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), 6000);
  }

  function newThreadId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Pictures the page shows: raster formats only. An SVG (or HTML) blob opened in a tab would run its
  // scripts with this page's origin, so anything else is offered as bytes to download, never rendered.
  const PICTURE_TYPES = new Set(["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff"]);
  // Screen recordings the bot watches (GIFs are pictures above; the server tells the two apart).
  const VIDEO_TYPES = new Set(["video/mp4", "video/webm", "video/quicktime"]);
  const DOWNLOAD_TYPE = "application/octet-stream";

  const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "short" });

  // --- start and sign-in -------------------------------------------------------------------------

  async function boot() {
    state.me = await getJson("/api/me");
    translatePage();
    if (!state.me.authenticated) {
      showLogin(t("This chat needs its access token."), false);
      return;
    }
    $("login").hidden = true;
    $("model").textContent = state.me.model || "";
    $("tabs").hidden = !state.me.admin;
    $("operator").hidden = !state.me.admin_available || state.me.admin;
    $("logout").hidden = !(state.me.admin || state.me.token_required);
    renderPresets();
    await loadSessions();
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("chat");
    const newest = state.sessions.find((s) => s.status === "active");
    await openThread(fromHash || (newest ? newest.thread : newThreadId()));
    $("app").hidden = false; // only now: a question typed earlier would have no conversation to go to
    $("text").focus();
  }

  function showLogin(reason, cancellable) {
    $("login-why").textContent = reason;
    $("login-error").textContent = "";
    $("login-cancel").hidden = !cancellable;
    $("login").hidden = false;
    $("login-token").value = "";
    $("login-token").focus();
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", "/api/login", { token: $("login-token").value });
      $("login").hidden = true;
      await boot();
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  });
  $("login-cancel").addEventListener("click", () => ($("login").hidden = true));
  $("operator").addEventListener("click", () =>
    showLogin(t("Enter the admin token for the read-only view of every session."), true)
  );
  $("logout").addEventListener("click", async () => {
    await api("POST", "/api/logout");
    state.mode = "mine";
    await boot();
  });

  // --- sidebar -----------------------------------------------------------------------------------

  // Answers to overlapping loads can arrive out of order: only the latest one is shown.
  const latest = { sessions: 0, view: 0 };

  async function loadSessions() {
    const ticket = ++latest.sessions;
    let sessions;
    if (state.mode === "all") {
      const query = new URLSearchParams();
      if ($("admin-search").value.trim()) query.set("search", $("admin-search").value.trim());
      if ($("admin-platform").value) query.set("platform", $("admin-platform").value);
      sessions = (await getJson(`/api/admin/sessions?${query}`)).sessions;
    } else {
      sessions = (await getJson("/api/sessions")).sessions;
    }
    if (ticket !== latest.sessions) return;
    state.sessions = sessions;
    renderSidebar();
  }

  async function show(path, flags) {
    const ticket = ++latest.view;
    const data = await getJson(path);
    if (ticket !== latest.view) return;
    state.view = { session: data.session, turns: data.turns, ...flags };
    render();
  }

  function renderSidebar() {
    const list = $("session-list");
    list.replaceChildren();
    const current = state.view && state.view.session ? state.view.session.id : null;
    if (state.mode === "mine" && state.view && !state.view.session && !state.view.readOnly) {
      list.append(sessionItem({ label: t("New conversation"), status: "active" }, true, null));
    }
    for (const session of state.sessions) {
      list.append(sessionItem(session, session.id === current, () => openSession(session)));
    }
    if (!state.sessions.length && state.mode === "all") {
      const empty = document.createElement("p");
      empty.className = "muted pad";
      empty.textContent = t("No sessions match.");
      list.append(empty);
    }
  }

  function sessionItem(session, selected, onClick) {
    const item = document.createElement("button");
    item.type = "button";
    item.className = "session" + (selected ? " selected" : "");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = session.label;
    item.append(label);
    const meta = document.createElement("span");
    meta.className = "meta";
    const parts = [];
    if (state.mode === "all") parts.push(session.platform);
    if (session.updated_at) parts.push(when(session.updated_at));
    if (session.status !== "active") parts.push("cleared");
    meta.textContent = parts.join(" · ");
    item.append(meta);
    if (onClick) item.addEventListener("click", onClick);
    return item;
  }

  $("new-chat").addEventListener("click", async () => {
    setMode("mine");
    await loadSessions();
    await openThread(newThreadId());
    $("text").focus();
  });
  $("tab-mine").addEventListener("click", async () => {
    setMode("mine");
    await loadSessions();
    await openThread(state.thread || newThreadId());
  });
  $("tab-all").addEventListener("click", async () => {
    setMode("all");
    await loadSessions();
  });
  let searchTimer = null;
  $("admin-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadSessions().catch((e) => toast(e.message)), 250);
  });
  $("admin-platform").addEventListener("change", () => loadSessions().catch((e) => toast(e.message)));

  function setMode(mode) {
    state.mode = mode;
    $("tab-mine").classList.toggle("active", mode === "mine");
    $("tab-all").classList.toggle("active", mode === "all");
    $("admin-filters").hidden = mode !== "all";
  }

  // --- opening a conversation --------------------------------------------------------------------

  async function openThread(thread) {
    state.thread = thread;
    history.replaceState(null, "", `#chat=${thread}`);
    await show(`/api/threads/${thread}`, { readOnly: false, admin: false });
  }

  async function openSession(session) {
    if (state.mode === "all") {
      await show(`/api/admin/sessions/${session.id}`, { readOnly: true, admin: true });
    } else if (session.status === "active") {
      await openThread(session.thread);
    } else {
      await show(`/api/sessions/${session.id}`, { readOnly: true, admin: false });
    }
  }

  async function refresh() {
    if (state.view && state.view.admin) return;
    if (state.view && state.view.readOnly && state.view.session) {
      await show(`/api/sessions/${state.view.session.id}`, { readOnly: true, admin: false });
    } else {
      await openThread(state.thread);
    }
    await loadSessions();
  }

  // --- the conversation --------------------------------------------------------------------------

  function imageUrl(sessionId, sha) {
    return state.view && state.view.admin
      ? `/api/admin/sessions/${sessionId}/images/${sha}`
      : `/api/sessions/${sessionId}/images/${sha}`;
  }

  function render() {
    const view = state.view;
    const session = view.session;
    $("title").textContent = session ? session.label : t("New conversation");
    $("rename-form").hidden = true;
    $("title").hidden = false;
    $("rename").disabled = !session || view.admin;
    $("clear").disabled = view.readOnly;
    const exportLink = $("export");
    if (session) {
      exportLink.href = view.admin ? `/api/admin/sessions/${session.id}/export` : `/api/sessions/${session.id}/export`;
      exportLink.classList.remove("disabled");
    } else {
      exportLink.removeAttribute("href");
      exportLink.classList.add("disabled");
    }
    const banner = $("banner");
    if (view.admin) {
      banner.textContent = `Read-only: ${session.platform} session ${session.thread}` +
        (session.owner ? ` (owner ${session.owner})` : "") + (session.status !== "active" ? ", cleared." : ".");
    } else if (view.readOnly) {
      banner.textContent = t("This conversation was cleared; its history is kept. Click a picture to attach it to a new question, then start a new chat.");
    }
    banner.hidden = !view.readOnly;
    $("composer").classList.toggle("disabled", view.readOnly);
    $("composer").hidden = view.admin;
    $("text").disabled = view.readOnly;
    $("send").disabled = view.readOnly || Boolean(state.controller);

    const box = $("messages");
    box.replaceChildren();
    for (const turn of view.turns) box.append(turnElement(session, turn));
    if (!view.readOnly) for (const note of state.notes[state.thread] || []) box.append(note);
    if (!view.turns.length && !(state.notes[state.thread] || []).length) box.append(emptyHint());
    renderSidebar();
    box.scrollTop = box.scrollHeight;
  }

  function emptyHint() {
    const hint = document.createElement("div");
    hint.className = "empty";
    hint.innerHTML =
      "<p><strong>Drop or paste a screenshot</strong>, or use Attach, then ask about it.</p>" +
      "<p>Follow-up questions see the earlier pictures. The buttons above the box fill in common jobs.</p>";
    return hint;
  }

  function turnElement(session, turn) {
    const article = document.createElement("article");
    article.className = "turn" + (turn.in_context ? "" : " removed");
    article.dataset.turn = turn.id;
    const user = document.createElement("div");
    user.className = "msg user";
    if (turn.images.length) {
      const pics = document.createElement("div");
      pics.className = "pics";
      for (const sha of turn.images) pics.append(thumbnail(session.id, sha, (turn.videos || []).includes(sha)));
      user.append(pics);
    }
    if (turn.text) {
      const text = document.createElement("div");
      text.className = "text";
      text.textContent = turn.text;
      if (turn.text.length > 280 || turn.text.split("\n").length > 5) {
        // Preset prompts are long: show their start, the whole on click.
        text.classList.add("clamp");
        text.title = t("Click to show all");
        text.addEventListener("click", () => text.classList.toggle("open"));
      }
      user.append(text);
    }
    if (!state.view.admin) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.title = t("Remove this turn from the conversation");
      remove.textContent = t("Remove");
      remove.hidden = !turn.in_context;
      remove.addEventListener("click", () => removeTurn(session.id, turn.id));
      user.append(remove);
    }
    article.append(user);

    const bot = document.createElement("div");
    bot.className = "msg bot";
    const body = document.createElement("div");
    body.className = "body";
    const extra = state.extras[turn.id];
    // The notices go above the answer (`body` is appended to `bot` below, after them), as they came live;
    // stored with the turn, so a reload shows them too. What this page saw live is shown as it came.
    for (const text of extra ? extra.notices : turn.notices || []) bot.append(noticeElement(text));
    const refused = extra ? [] : (turn.refused || []).map((text) => ({ kind: "error", text }));
    if (turn.status === "done") {
      bot.dataset.state = "done";
      body.innerHTML = renderMarkdown(extra ? extra.text : turn.answer || "");
      for (const reply of extra ? extra.replies : refused) body.append(replyElement(reply.kind, reply.text));
      if (extra) for (const file of extra.files) body.append(...fileElements(file));
    } else if (turn.status === "attached") {
      bot.dataset.state = "done";
      body.textContent = t("Got it - what would you like to know?");
      for (const reply of refused) body.append(replyElement(reply.kind, reply.text));
    } else if (turn.status === "pending") {
      bot.dataset.state = "waiting";
      body.textContent = t("Answering…");
    } else {
      bot.dataset.state = "error";
      const why = { failed: t("This answer failed."), cancelled: t("Stopped: the conversation was cleared."),
        interrupted: t("The answer was interrupted.") }[turn.status] || turn.status;
      body.innerHTML = (turn.answer ? renderMarkdown(turn.answer) : "") +
        `<p class="error">${escapeHtml(why)} Ask again, or send /retry.</p>`;
      for (const reply of refused) body.append(replyElement(reply.kind, reply.text));
    }
    bot.append(body);
    const meta = document.createElement("div");
    meta.className = "meta";
    const bits = [when(turn.created_at)];
    if (turn.latency_ms != null) bits.push(`${(turn.latency_ms / 1000).toFixed(1)} s`);
    if (turn.output_tokens != null) bits.push(`${turn.output_tokens} tokens`);
    if (!turn.in_context) bits.push("removed");
    if (turn.feedback && turn.feedback.length) {
      // The operator view's votes: counts here, who voted what on hover.
      const up = turn.feedback.filter((f) => f.vote === "up").length;
      bits.push(`👍 ${up} 👎 ${turn.feedback.length - up}`);
      meta.title = turn.feedback.map((f) => `${f.user}: ${f.vote}`).join("\n");
    }
    meta.textContent = bits.join(" · ");
    bot.append(meta);
    if (turn.status === "done" && !state.view.admin) bot.append(voteButtons(session.id, turn));
    article.append(bot);
    return article;
  }

  // Thumbs up / down under every final answer; the user's current vote is pressed, and changeable.
  function voteButtons(sessionId, turn) {
    const row = document.createElement("div");
    row.className = "votes";
    for (const [vote, label, title] of [["up", "👍", t("Helpful")], ["down", "👎", t("Not helpful")]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "vote";
      button.dataset.vote = vote;
      button.textContent = label;
      button.title = title;
      button.setAttribute("aria-label", title);
      button.setAttribute("aria-pressed", String(turn.vote === vote));
      button.addEventListener("click", () => castVote(sessionId, turn, vote, row));
      row.append(button);
    }
    return row;
  }

  async function castVote(sessionId, turn, vote, row) {
    try {
      const result = await (await api("POST", `/api/sessions/${sessionId}/turns/${turn.id}/vote`, { vote })).json();
      turn.vote = result.vote;
      for (const button of row.querySelectorAll("button.vote")) {
        button.setAttribute("aria-pressed", String(button.dataset.vote === result.vote));
      }
      toast(result.message);
    } catch (error) {
      toast(error.message);
    }
  }

  // A recording plays muted, with its controls (a click there plays it, so only pictures attach on click).
  function mediaElement(url, video, name) {
    const el = document.createElement(video ? "video" : "img");
    el.src = url;
    if (video) {
      el.controls = true;
      el.muted = true;
      el.preload = "metadata";
    } else {
      el.alt = name;
    }
    return el;
  }

  function thumbnail(sessionId, sha, video) {
    const img = mediaElement(imageUrl(sessionId, sha), video, "picture " + sha.slice(0, 8));
    if (!video) img.loading = "lazy";
    img.className = "thumb";
    if (!state.view.admin && !video) {
      img.title = t("Attach this picture to the next question");
      img.tabIndex = 0;
      const attach = () => attachRef(sessionId, sha, img.src);
      img.addEventListener("click", attach);
      img.addEventListener("keydown", (e) => e.key === "Enter" && attach());
    }
    return img;
  }

  async function removeTurn(sessionId, turnId) {
    try {
      await api("DELETE", `/api/sessions/${sessionId}/turns/${turnId}`);
      await refresh();
    } catch (error) {
      toast(error.message);
    }
  }

  // --- rename, export, clear ---------------------------------------------------------------------

  $("rename").addEventListener("click", () => {
    if (!state.view || !state.view.session) return;
    $("title").hidden = true;
    $("rename-form").hidden = false;
    $("rename-input").value = state.view.session.title || state.view.session.label;
    $("rename-input").focus();
    $("rename-input").select();
  });
  $("rename-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const title = $("rename-input").value.trim();
    try {
      if (title) await api("PATCH", `/api/sessions/${state.view.session.id}`, { title });
      await refresh();
    } catch (error) {
      toast(error.message);
    }
  });
  $("rename-input").addEventListener("keydown", (event) => {
    if (event.key === "Escape") render();
  });
  $("export").addEventListener("click", (event) => {
    if (!$("export").getAttribute("href")) event.preventDefault();
  });
  $("clear").addEventListener("click", async () => {
    if (!state.thread || state.view.readOnly) return;
    try {
      if (state.controller) state.controller.abort();
      const result = await (await api("POST", `/api/threads/${state.thread}/clear`)).json();
      state.notes[state.thread] = [];
      await refresh();
      toast(result.message);
    } catch (error) {
      toast(error.message);
    }
  });

  // --- pictures: attach, drop, paste, re-attach --------------------------------------------------

  function addFiles(files) {
    const limits = state.me.limits;
    for (const file of files) {
      if (file.type === "image/svg+xml") {
        toast(t("'{name}' is an SVG drawing; send a PNG, JPEG or WebP picture (a screenshot works).", { name: file.name }));
        continue;
      }
      const video = VIDEO_TYPES.has(file.type);
      const pdf = file.type === "application/pdf";
      if (!PICTURE_TYPES.has(file.type) && !video && !pdf) {
        toast(t("'{name}' is not a picture, a PDF or a video; send a PNG, JPEG or WebP image, a PDF, or an MP4 or WebM recording.", { name: file.name }));
        continue;
      }
      if (file.size > limits.max_image_bytes) {  // the server holds videos to the pictures' limit
        toast(t("'{name}' is over the {limit} MB limit.", { name: file.name, limit: Math.round(limits.max_image_bytes / 1048576) }));
        continue;
      }
      if (state.attachments.length >= limits.max_images) {
        toast(t("I can look at {count} pictures at a time.", { count: limits.max_images }));
        break;
      }
      state.attachments.push({ file, url: URL.createObjectURL(file), name: file.name || "pasted.png", video, pdf });
    }
    renderTray();
  }

  function attachRef(sessionId, sha, url) {
    const ref = `${sessionId}/${sha}`;
    if (state.attachments.some((a) => a.ref === ref)) return;
    if (state.attachments.length >= state.me.limits.max_images) {
      toast(t("I can look at {count} pictures at a time.", { count: state.me.limits.max_images }));
      return;
    }
    state.attachments.push({ ref, url, name: sha.slice(0, 8) });
    renderTray();
    toast(t("Picture attached to the next question."));
  }

  function renderTray() {
    const tray = $("tray");
    tray.replaceChildren();
    state.attachments.forEach((attachment, index) => {
      const item = document.createElement("div");
      item.className = "tray-item";
      if (attachment.pdf) {  // no preview: the file's name on a page icon
        const doc = document.createElement("span");
        doc.className = "tray-doc";
        doc.textContent = `📄 ${attachment.name}`;
        item.append(doc);
      } else {
        item.append(mediaElement(attachment.url, attachment.video, attachment.name));
      }
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.title = t("Remove this picture");
      remove.addEventListener("click", () => {
        const [gone] = state.attachments.splice(index, 1);
        if (gone.file) URL.revokeObjectURL(gone.url);
        renderTray();
      });
      item.append(remove);
      tray.append(item);
    });
  }

  $("file").addEventListener("change", (event) => {
    addFiles(Array.from(event.target.files));
    event.target.value = "";
  });

  let dragDepth = 0;
  const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth += 1;
    $("drop").hidden = false;
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) $("drop").hidden = true;
  });
  window.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    $("drop").hidden = true;
    addFiles(Array.from(event.dataTransfer.files));
  });
  window.addEventListener("paste", (event) => {
    const files = Array.from(event.clipboardData ? event.clipboardData.files : []).filter((f) =>
      f.type.startsWith("image/") || VIDEO_TYPES.has(f.type) || f.type === "application/pdf"
    );
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });

  // --- presets -----------------------------------------------------------------------------------

  function renderPresets() {
    const box = $("presets");
    box.replaceChildren();
    for (const preset of state.me.presets) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "preset";
      button.textContent = preset.label;
      button.dataset.preset = preset.id;
      button.addEventListener("click", () => {
        const text = $("text");
        text.value = preset.text;
        text.focus();
        const blank = preset.text.indexOf("___");
        if (blank >= 0) text.setSelectionRange(blank, blank + 3);
        else text.setSelectionRange(text.value.length, text.value.length);
      });
      box.append(button);
    }
  }

  // --- asking and streaming ----------------------------------------------------------------------

  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());

  function setBusy(busy) {
    $("send").hidden = busy;
    $("stop").hidden = !busy;
    if (!busy) $("status").textContent = "";
  }

  function pendingExchange(text, attachments) {
    const article = document.createElement("article");
    article.className = "turn live";
    const user = document.createElement("div");
    user.className = "msg user";
    if (attachments.length) {
      const pics = document.createElement("div");
      pics.className = "pics";
      for (const attachment of attachments) {
        if (attachment.pdf) {
          const doc = document.createElement("span");
          doc.className = "tray-doc";
          doc.textContent = `📄 ${attachment.name}`;
          pics.append(doc);
          continue;
        }
        const media = mediaElement(attachment.url, attachment.video, attachment.name);
        media.className = "thumb";
        pics.append(media);
      }
      user.append(pics);
    }
    if (text) {
      const body = document.createElement("div");
      body.className = "text";
      body.textContent = text;
      user.append(body);
    }
    article.append(user);
    const bot = document.createElement("div");
    bot.className = "msg bot";
    bot.dataset.state = "waiting";
    const body = document.createElement("div");
    body.className = "body";
    body.innerHTML = '<p class="muted">Sending…</p>';
    bot.append(body);
    article.append(bot);
    const box = $("messages");
    const hint = box.querySelector(".empty");
    if (hint) hint.remove();
    box.append(article);
    box.scrollTop = box.scrollHeight;
    return { article, bot, body };
  }

  async function send() {
    if (state.controller || !state.view || state.view.readOnly) return;
    const text = $("text").value.trim();
    const attachments = state.attachments;
    if (!text && !attachments.length) return;
    const form = new FormData();
    form.append("text", text);
    for (const attachment of attachments) {
      if (attachment.file) form.append("file", attachment.file, attachment.name);
      else form.append("ref", attachment.ref);
    }
    $("text").value = "";
    state.attachments = [];
    renderTray();
    const live = pendingExchange(text, attachments);
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    const outcome = { answered: false, turnId: null, text: "", notices: [], replies: [], files: [] };
    try {
      const response = await fetch(`/api/threads/${state.thread}/messages`, {
        method: "POST",
        body: form,
        headers: { "X-CSRF-Token": state.me.csrf },
        credentials: "same-origin",
        signal: controller.signal,
      });
      if (!response.ok) {
        const message = await errorText(response);
        showError(live, message);
        $("text").value = text; // let the user fix the upload and send again
        state.attachments = attachments;
        renderTray();
        return;
      }
      await readEvents(response, (name, data) => onEvent(live, outcome, name, data));
    } catch (error) {
      if (error.name === "AbortError") showError(live, t("Stopped."));
      else showError(live, t("The connection to the bot was lost ({error}); try again.", { error: error.message }));
    } finally {
      state.controller = null;
      setBusy(false);
    }
    for (const attachment of attachments) if (attachment.file) URL.revokeObjectURL(attachment.url);
    if (outcome.turnId !== null) state.extras[outcome.turnId] = outcome;
    if (!outcome.answered && (text.startsWith("/") || live.bot.dataset.state === "error")) {
      // Command replies and refusals are not stored as turns: keep them on screen after the reload.
      live.article.classList.remove("live");
      live.article.classList.add("note");
      (state.notes[state.thread] = state.notes[state.thread] || []).push(live.article);
    }
    await refresh().catch((error) => toast(error.message));
    $("text").focus();
  }

  function showError(live, message) {
    live.bot.dataset.state = "error";
    live.body.innerHTML = `<p class="error">${escapeHtml(message)}</p>`;
  }

  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = null;
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (name) onEvent(name, data ? JSON.parse(data) : {});
      }
    }
  }

  function onEvent(live, outcome, name, data) {
    const { bot, body } = live;
    const status = $("status");
    if (name === "status") {
      // The bot's own wording (queue position, working); an empty text clears it.
      status.textContent = data.text || "";
      if (data.text && bot.dataset.state === "waiting") {
        body.innerHTML = `<p class="muted">${escapeHtml(data.text)}</p>`;
      }
    } else if (name === "generating") {
      bot.dataset.state = "generating";
      live.text = "";
      body.innerHTML = "";
    } else if (name === "delta") {
      live.text = (live.text || "") + data.text;
      scheduleRender(live);
    } else if (name === "answer") {
      if (renderPending) cancelAnimationFrame(renderPending);
      renderPending = null;
      outcome.answered = true;
      outcome.turnId = data.turn_id;
      outcome.text = data.text;
      live.text = data.text;
      body.innerHTML = renderMarkdown(data.text);
      bot.dataset.state = "done";
    } else if (name === "text") {
      const kind = data.kind === "error" ? "error" : "info";
      outcome.replies.push({ kind, text: data.text });
      addReply(live, kind, data.text);
    } else if (name === "notice") {
      outcome.notices.push(data.text);
      bot.insertBefore(noticeElement(data.text), body);
    } else if (name === "document" || name === "picture") {
      data.kind = name;
      outcome.files.push(data);
      for (const element of fileElements(data)) body.append(element);
      if (bot.dataset.state === "waiting") bot.dataset.state = "done";
    } else if (name === "done") {
      status.textContent = "";
    }
    $("messages").scrollTop = $("messages").scrollHeight;
  }

  function noticeElement(text) {
    const note = document.createElement("p");
    note.className = "notice";
    note.textContent = text;
    return note;
  }

  function replyElement(kind, text) {
    const block = document.createElement("div");
    block.className = kind === "error" ? "reply error" : "reply";
    block.innerHTML = renderMarkdown(text);
    return block;
  }

  function addReply(live, kind, text) {
    const { bot, body } = live;
    if (renderPending) {
      cancelAnimationFrame(renderPending);
      renderPending = null;
      body.innerHTML = renderMarkdown(live.text || "");
    }
    if (bot.dataset.state === "waiting") body.innerHTML = "";
    body.append(replyElement(kind, text));
    if (kind === "error") bot.dataset.state = "error";
    else if (bot.dataset.state !== "error" && bot.dataset.state !== "generating") bot.dataset.state = "done";
  }

  // A generated file's blob type: a picture event in a raster format is shown as that picture; every other
  // file (the /code preset's page.html, a CSV, an export) is inert bytes that can only be downloaded.
  const shownAs = (data) => (data.kind === "picture" && PICTURE_TYPES.has(data.mime_type) ? data.mime_type : DOWNLOAD_TYPE);

  const fileUrls = new Map(); // one object URL per file shown
  function fileElements(data) {
    let url = fileUrls.get(data);
    if (!url) {
      const bytes = Uint8Array.from(atob(data.data), (c) => c.charCodeAt(0));
      url = URL.createObjectURL(new Blob([bytes], { type: shownAs(data) }));
      fileUrls.set(data, url);
    }
    const out = [];
    const caption = document.createElement("p");
    caption.className = "file-caption";
    caption.textContent = data.caption || data.filename;
    out.push(caption);
    if (shownAs(data) !== DOWNLOAD_TYPE) {
      const img = document.createElement("img");
      img.src = url;
      img.alt = data.filename;
      img.className = "result-picture";
      out.push(img);
    }
    const link = document.createElement("a");
    link.href = url;
    link.download = data.filename;
    link.className = "button download";
    link.textContent = t("Download {name}", { name: data.filename });
    out.push(link);
    return out;
  }

  let renderPending = null;
  function scheduleRender(live) {
    if (renderPending) return;
    renderPending = requestAnimationFrame(() => {
      renderPending = null;
      live.body.innerHTML = renderMarkdown(live.text) + '<span class="cursor"></span>';
      $("messages").scrollTop = $("messages").scrollHeight;
    });
  }

  // --- copy buttons on code blocks -----------------------------------------------------------------

  $("messages").addEventListener("click", async (event) => {
    const button = event.target.closest(".copy");
    if (!button) return;
    const code = button.closest(".code").querySelector("code").textContent;
    try {
      await navigator.clipboard.writeText(code);
    } catch (_) {
      // Plain http on an intranet address is not a secure context: no clipboard API there.
      const area = document.createElement("textarea");
      area.value = code;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = t("Copied");
    setTimeout(() => (button.textContent = t("Copy")), 1500);
  });

  boot().catch((error) => {
    if (error instanceof ApiError && error.status === 401) showLogin(error.message, false);
    else toast(t("The chat could not start: {error}", { error: error.message }));
  });
})();
