"""Wrap the code cells of source notebooks to at most WIDTH characters a line, so that no code runs off the right
edge of a page: a long statement is broken after the commas inside its brackets (continuation lines aligned with the
opening bracket) and a long string literal is cut at spaces into adjacent literals. A cell is rewritten only when the
result parses to the same AST (so nothing it does changes); cells tagged ``remove-cell`` are never shown and are left
as they are. Usage: ``python book/_tools/wrap_code_cells.py notebooks/*.ipynb`` (idempotent)."""
import ast
import io
import json
import sys
import tokenize

WIDTH = 88
OPEN, CLOSE = "([{", ")]}"
BREAK_AFTER = (",", "+")  # a line may end after these inside brackets


def _split_string(tok: str, room: int) -> list[str]:
    """A plain (non-f) string literal cut at spaces into pieces of at most ``room`` characters."""
    prefix = tok[: len(tok) - len(tok.lstrip("rRbBuU"))]
    body = tok[len(prefix):]
    quote = body[0]
    if "f" in prefix.lower() or body.startswith(quote * 3) or room < 20:
        return [tok]
    text, pieces = body[1:-1], []
    while len(text) + len(prefix) + 2 > room:
        cut = text.rfind(" ", 0, room - len(prefix) - 2)
        if cut <= 0:
            break
        pieces.append(prefix + quote + text[: cut + 1] + quote)
        text = text[cut + 1:]
    return pieces + [prefix + quote + text + quote]


def _statements(src: str):
    """(start line, end line, tokens) of each logical line; tokens are (type, string, start col on a joined line)."""
    toks = list(tokenize.generate_tokens(io.StringIO(src).readline))
    stmt = []
    for t in toks:
        if t.type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING):
            if t.type == tokenize.COMMENT and not stmt:
                continue
            if t.type == tokenize.COMMENT:
                return  # a comment inside a statement: leave the cell alone
            continue
        if t.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if stmt:
                yield stmt
            stmt = []
            continue
        stmt.append(t)


def _join(stmt, lines) -> list[tuple[str, str]]:
    """The statement as (separator before, token) pairs, with the original spacing on one line."""
    out, prev = [], None
    for t in stmt:
        if prev is None:
            sep = ""
        elif t.start[0] == prev.end[0]:
            sep = lines[t.start[0] - 1][prev.end[1]: t.start[1]]
        else:
            sep = "" if prev.string in OPEN or t.string in CLOSE else " "
        out.append((sep, t.string))
        prev = t
    return out


def _is_plain_string(tok: str) -> bool:
    return tok[:1] in "\"'rRbBuU" and tok[-1:] in "\"'" and "f" not in tok[:2].lower()


def _chunk(pairs, i: int) -> int:
    """Length of what follows the break point at ``i`` up to the next one at the same depth (or the closing
    bracket)."""
    depth, n = 0, 0
    for sep, tok in pairs[i + 1:]:
        if depth == 0 and (tok in BREAK_AFTER or tok in CLOSE):
            return n + 1
        depth += (tok in OPEN) - (tok in CLOSE)
        n += len(sep) + len(tok)
    return n


def _wrap_statement(pairs, indent: str) -> str:
    """Break after a comma or a ``+`` inside brackets when what follows would pass WIDTH; continuation lines align with
    the opening bracket; a string literal that alone passes WIDTH is cut into adjacent literals."""
    lines, line, stack = [], indent, []
    for i, (sep, tok) in enumerate(pairs):
        if line.strip() and stack and line.endswith(BREAK_AFTER) and len(line) + _chunk(pairs, i - 1) > WIDTH:
            lines.append(line)
            line, sep = " " * stack[-1], ""
        pieces = [tok]
        if _is_plain_string(tok) and stack and len(line) + len(sep) + len(tok) > WIDTH:
            pieces = _split_string(tok, WIDTH - max(stack[-1], len(line) + len(sep)))
            if len(pieces) > 1 and line.strip() and line.strip()[-1:] not in OPEN + "".join(BREAK_AFTER):
                pieces = [tok]  # not at the start of an argument: leave it whole
        for k, piece in enumerate(pieces):
            if k > 0:
                lines.append(line)
                line = " " * stack[-1]
            line += (sep if k == 0 else "") + piece
        if tok in OPEN:
            stack.append(len(line))
        elif tok in CLOSE and stack:
            stack.pop()
    lines.append(line)
    return "\n".join(x.rstrip() for x in lines)


def wrap(src: str) -> str:
    """``src`` with every statement longer than WIDTH wrapped (IPython magic lines kept as they are)."""
    magics = [line for line in src.splitlines() if line.lstrip().startswith("%")]
    code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith("%"))
    if not code.strip() or all(len(line) <= WIDTH for line in code.splitlines()):
        return src
    lines = code.splitlines()
    try:
        stmts = list(_statements(code + "\n"))
    except (tokenize.TokenError, IndentationError):
        return src
    out, done = [], 0
    for stmt in stmts:
        first, last = stmt[0].start[0], stmt[-1].end[0]
        out.extend(lines[done: first - 1])
        original = lines[first - 1: last]
        if all(len(x) <= WIDTH for x in original):
            out.extend(original)
        else:
            indent = lines[first - 1][: len(lines[first - 1]) - len(lines[first - 1].lstrip())]
            out.append(_wrap_statement(_join(stmt, lines), indent))
        done = last
    out.extend(lines[done:])
    new = "\n".join(out)
    try:
        same = ast.dump(ast.parse(new)) == ast.dump(ast.parse(code))
    except SyntaxError:
        same = False
    return "\n".join(magics + [new]) if same else src


def main(paths) -> int:
    for path in paths:
        nb = json.load(open(path))
        for cell in nb["cells"]:
            tags = cell.get("metadata", {}).get("tags", [])
            if cell["cell_type"] == "code" and "remove-cell" not in tags:
                src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                cell["source"] = wrap(src)
        with open(path, "w") as f:
            json.dump(nb, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
