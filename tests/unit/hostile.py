"""Hostile values, and readers that take rendered HCL, shell and YAML back to the values
they carry. The readers are written apart from builder.render.serialize: a test that decoded
with the encoder's own rules could not fail."""

from __future__ import annotations

import subprocess

HOSTILE = {
    "double-quote": 'say "hi"',
    "single-quote": "it's",
    "newline": "one\ntwo",
    "hcl-interpolation": '${file("/etc/hostname")}',
    "hcl-directive": "%{ if true }x%{ endif }",
    "jinja": "{{ 7 * 7 }}",
    "command-substitution": "$(touch /tmp/pwned)",
    "backticks": "`touch /tmp/pwned`",
    "shell-break-out": "';touch${IFS}/tmp/pwned;'",
    "backslashes": "a\\b\\\\c\\n",
    "nul": "a\x00b",
    "control": "bell\x07esc\x1b",
    "yaml-syntax": "key: value # not a comment\n- item",
    "long": "x" * 5000,
    "non-ascii": "Grüße, Δ, 日本, emoji \U0001f600",
}

_HCL_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def hcl_decode(raw: str) -> tuple[str, list[str]]:
    """The value of a quoted HCL string as python-hcl2 returns it (quotes and escapes kept):
    escapes decoded, `$${`/`%%{` read as literal text; and the live `${...}`/`%{...}`
    sequences Packer would evaluate (kept in the text as written)."""
    assert raw[:1] == raw[-1:] == '"' and len(raw) >= 2, f"not a quoted HCL string: {raw!r}"
    body, out, lives, i = raw[1:-1], [], [], 0
    while i < len(body):
        if body[i] == "\\":
            kind = body[i + 1]
            if kind in _HCL_ESCAPES:
                out.append(_HCL_ESCAPES[kind])
                i += 2
            else:
                width = {"u": 4, "U": 8}[kind]
                out.append(chr(int(body[i + 2:i + 2 + width], 16)))
                i += 2 + width
        elif body.startswith(("$${", "%%{"), i):
            out.append(body[i + 1:i + 3])
            i += 3
        elif body.startswith(("${", "%{"), i):
            end = body.index("}", i) + 1
            lives.append(body[i:end])
            out.append(body[i:end])
            i = end
        else:
            out.append(body[i])
            i += 1
    return "".join(out), lives


def hcl_literal(raw: str) -> str:
    """A quoted HCL string that must hold no live template sequence, decoded."""
    text, lives = hcl_decode(raw)
    assert not lives, f"live template sequences {lives} in {raw!r}"
    return text


def shell_value(words: str) -> str:
    """What sh makes of rendered shell words: printed by printf, nothing else run."""
    proc = subprocess.run(["sh", "-c", f"printf %s {words}"], capture_output=True,
                          text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    return proc.stdout
