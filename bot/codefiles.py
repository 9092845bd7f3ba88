"""Long code in an answer is also sent as a file: easier to save than to copy out of a chat."""

from __future__ import annotations

import mimetypes

from bot.i18n import _
from bot.markdown import code_blocks
from bot.transport import OutgoingFile
from bot.wording import CODE_FILE_CAPTION

__all__ = ["EXTENSIONS", "code_files"]

# A code block's language tag -> the file's extension; unknown tags give ".txt".
EXTENSIONS = {
    "python": "py", "py": "py", "javascript": "js", "js": "js", "typescript": "ts", "ts": "ts",
    "html": "html", "css": "css", "json": "json", "sql": "sql", "bash": "sh", "sh": "sh", "shell": "sh",
    "yaml": "yaml", "yml": "yaml", "xml": "xml", "csv": "csv", "markdown": "md", "md": "md",
    "java": "java", "go": "go", "rust": "rs", "c": "c", "cpp": "cpp", "c++": "cpp", "csharp": "cs",
}


def code_files(answer: str, turn_id: int, min_chars: int) -> list[OutgoingFile]:
    """Every code block of at least `min_chars` characters, named after the turn ("answer-7.py")."""
    long_blocks = [b for b in code_blocks(answer) if len(b.code) >= min_chars]
    files = []
    for i, block in enumerate(long_blocks, 1):
        ext = EXTENSIONS.get(block.language.lower(), "txt")
        suffix = f"-{i}" if len(long_blocks) > 1 else ""
        name = f"answer-{turn_id}{suffix}.{ext}"
        mime = mimetypes.guess_type(name)[0] or "text/plain"
        files.append(OutgoingFile(name, block.code.encode(), mime, _(CODE_FILE_CAPTION)))
    return files
