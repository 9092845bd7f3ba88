// A small, safe Markdown renderer for model answers (code fences, tables, lists, headings,
// inline code, bold) and a tiny syntax highlighter. Everything is HTML-escaped first: model output
// never becomes markup of its own.
"use strict";

(() => {
  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

  // --- highlighting ------------------------------------------------------------------------------

  const KEYWORDS = new Set(
    (
      "abstract and as async await break case catch class const continue def default del delete do elif else " +
      "enum except export extends false finally fn for from function if impl import in interface is lambda let " +
      "match mut new none not null or pass private protected pub public raise return self static struct super " +
      "switch this throw true try type typeof undefined use var void while with yield " +
      "select insert update where join left right inner outer on group by order having into values create " +
      "table primary key references limit offset drop alter index distinct count sum avg min max"
    ).split(" ")
  );
  const HASH_COMMENT = new Set(["python", "py", "sh", "bash", "shell", "zsh", "yaml", "yml", "ruby", "rb", "toml",
    "ini", "conf", "dockerfile", "r", "perl", "makefile", "powershell", "ps1"]);
  const MARKUP = new Set(["html", "xml", "svg", "vue", "xhtml"]);

  // Groups: 1 comment, 2 string, 3 number, 4 word (a keyword when listed).
  const RE_C = /(\/\/[^\n]*|\/\*[\s\S]*?\*\/)|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|(\b\d[\d_]*(?:\.\d+)?\b)|([A-Za-z_$][\w$]*)/g;
  const RE_HASH = /(#[^\n]*)|("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|(\b\d[\d_]*(?:\.\d+)?\b)|([A-Za-z_$][\w$]*)/g;
  const RE_SQL = /(--[^\n]*|\/\*[\s\S]*?\*\/)|('(?:''|[^'])*'|"[^"]*")|(\b\d+(?:\.\d+)?\b)|([A-Za-z_]\w*)/g;
  const RE_CSS = /(\/\*[\s\S]*?\*\/)|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|(#[0-9a-fA-F]{3,8}\b|-?\b\d+(?:\.\d+)?(?:px|em|rem|%|vh|vw|s|ms|deg|fr)?)|([A-Za-z-][\w-]*)(?=\s*:)/g;
  // Groups: 1 comment, 2 tag name, 3 string, 4 attribute name, 5 tag end.
  const RE_MARKUP = /(<!--[\s\S]*?-->)|(<\/?[A-Za-z][\w:-]*)|("[^"\n]*"|'[^'\n]*')|([A-Za-z_:@][\w:.-]*)(?==)|(\/?>)/g;

  function paint(code, re, classOf) {
    let out = "";
    let last = 0;
    re.lastIndex = 0;
    for (let m = re.exec(code); m !== null; m = re.exec(code)) {
      if (m[0] === "") {
        re.lastIndex += 1;
        continue;
      }
      out += escapeHtml(code.slice(last, m.index));
      const cls = classOf(m);
      out += cls ? `<span class="tok-${cls}">${escapeHtml(m[0])}</span>` : escapeHtml(m[0]);
      last = re.lastIndex;
    }
    return out + escapeHtml(code.slice(last));
  }

  const codeClass = (m) => {
    if (m[1] !== undefined) return "c";
    if (m[2] !== undefined) return "s";
    if (m[3] !== undefined) return "n";
    return KEYWORDS.has(m[4].toLowerCase()) ? "k" : null;
  };
  const cssClass = (m) => (m[1] !== undefined ? "c" : m[2] !== undefined ? "s" : m[3] !== undefined ? "n" : "k");
  const markupClass = (m) =>
    m[1] !== undefined ? "c" : m[2] !== undefined || m[5] !== undefined ? "k" : m[3] !== undefined ? "s" : "a";

  function highlight(code, lang) {
    const name = (lang || "").toLowerCase();
    if (MARKUP.has(name) || (!name && /^\s*</.test(code))) return paint(code, RE_MARKUP, markupClass);
    if (name === "css" || name === "scss" || name === "less") return paint(code, RE_CSS, cssClass);
    if (name === "sql") return paint(code, RE_SQL, codeClass);
    if (HASH_COMMENT.has(name)) return paint(code, RE_HASH, codeClass);
    if (name === "text" || name === "txt" || name === "plain") return escapeHtml(code);
    return paint(code, RE_C, codeClass);
  }

  // --- Markdown ----------------------------------------------------------------------------------

  function inline(text) {
    return text
      .split(/(`[^`\n]+`)/)
      .map((part, k) =>
        k % 2
          ? `<code>${escapeHtml(part.slice(1, -1))}</code>`
          : escapeHtml(part).replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
      )
      .join("");
  }

  const labels = { copy: "Copy" }; // the page sets them in the browser's language (app.js)

  function codeBlock(code, lang) {
    const label = escapeHtml(lang || "code");
    return (
      `<div class="code"><div class="code-head"><span>${label}</span>` +
      `<button type="button" class="copy">${escapeHtml(labels.copy)}</button></div>` +
      `<pre><code>${highlight(code, lang)}</code></pre></div>`
    );
  }

  const FENCE = /^\s*(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/;
  const TABLE_ROW = /^\s*\|.*\|\s*$/;
  const TABLE_RULE = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;
  const LIST_ITEM = /^\s*([-*+]|\d+[.)])\s+(.*)$/;
  const HEADING = /^(#{1,6})\s+(.*)$/;

  const cells = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  const startsBlock = (line, next) =>
    FENCE.test(line) || HEADING.test(line) || LIST_ITEM.test(line) ||
    (TABLE_ROW.test(line) && next !== undefined && TABLE_RULE.test(next));

  function renderMarkdown(source) {
    const lines = String(source || "").replace(/\r\n?/g, "\n").split("\n");
    const out = [];
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = line.match(FENCE);
      if (fence) {
        const body = [];
        i += 1;
        while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
        i += 1; // the closing fence (absent while an answer is still streaming)
        out.push(codeBlock(body.join("\n"), fence[2]));
        continue;
      }
      if (TABLE_ROW.test(line) && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
        const head = cells(line);
        i += 2;
        const rows = [];
        while (i < lines.length && TABLE_ROW.test(lines[i])) rows.push(cells(lines[i++]));
        out.push(
          "<table><thead><tr>" + head.map((c) => `<th>${inline(c)}</th>`).join("") + "</tr></thead><tbody>" +
          rows.map((r) => "<tr>" + r.map((c) => `<td>${inline(c)}</td>`).join("") + "</tr>").join("") +
          "</tbody></table>"
        );
        continue;
      }
      const heading = line.match(HEADING);
      if (heading) {
        const level = Math.min(heading[1].length + 2, 6); // answers sit under the page's own headings
        out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
        i += 1;
        continue;
      }
      if (LIST_ITEM.test(line)) {
        const ordered = /^\s*\d/.test(line);
        const items = [];
        while (i < lines.length && LIST_ITEM.test(lines[i])) items.push(lines[i++].match(LIST_ITEM)[2]);
        const tag = ordered ? "ol" : "ul";
        out.push(`<${tag}>` + items.map((item) => `<li>${inline(item)}</li>`).join("") + `</${tag}>`);
        continue;
      }
      if (!line.trim()) {
        i += 1;
        continue;
      }
      const para = [];
      while (i < lines.length && lines[i].trim() && (para.length === 0 || !startsBlock(lines[i], lines[i + 1]))) {
        para.push(lines[i++]);
      }
      out.push(`<p>${para.map(inline).join("<br>")}</p>`);
    }
    return out.join("");
  }

  window.vlmMarkdown = { renderMarkdown, highlight, escapeHtml, labels };
})();
