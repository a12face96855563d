#!/usr/bin/env python3
"""Generate the section-3 manual pages from include/libstubdm.h.

The header is the one place the API is documented (ownership, return
codes, callback context); the pages are made from it so they cannot drift
apart: each "/* ---- Title ---- */" section of the header becomes the
DESCRIPTION of one page (its introduction, then every type and function
with its doc comment), its prototypes the SYNOPSIS, each function's
"@return" the RETURN VALUE, and docs/man/examples/PAGE.c (compiled by the
man-pages test) the EXAMPLE.  libstubdm(3), the overview, adds the text
below to the header's conventions.

usage: gen-man3.py HEADER OUTDIR
writes OUTDIR/PAGE.3 for every page and OUTDIR/man3.links ("FUNCTION PAGE"
per exported function: the names installed as symlinks to their page).
tests/man/check-man.sh fails when the committed pages differ from this
script's output: after changing the header, run
    docs/man/gen-man3.py include/libstubdm.h docs/man
"""
import os
import re
import sys
import textwrap

DATE = "2026-12-05"

# page, header sections, one-line summary, see also
PAGES = [
    ("libstubdm", ["Version and features", "Error codes"],
     "toolstack side of the Xen Linux-stubdomain protocol",
     ["stubdm_ctx", "stubdm_loop", "stubdm_op", "stubdm_nodes",
      "stubdm_dm_argv", "stubdm_contract", "stubdm_wait_running",
      "stubdm_qmp", "stubdm_qmp_proxy", "stubdm_pci", "stubdm_spawn",
      "stubdm_console"]),
    ("stubdm_ctx", ["Context", "Logging"],
     "library context, its errors and its log hook",
     ["libstubdm", "stubdm_loop", "stubdm_op"]),
    ("stubdm_loop", ["Event-loop integration"],
     "drive a libstubdm context from an event loop",
     ["libstubdm", "stubdm_ctx", "stubdm_op"]),
    ("stubdm_op", ["Asynchronous operations"],
     "asynchronous operations and their completion",
     ["libstubdm", "stubdm_loop"]),
    ("stubdm_nodes", ["Node lists: what the library writes to xenstore, "
                      "as data"],
     "xenstore node lists computed before any I/O",
     ["stubdm_dm_argv", "stubdm_contract"]),
    ("stubdm_dm_argv", ["dm-argv: the QEMU command line in xenstore"],
     "the QEMU command line of a stubdomain in xenstore",
     ["stubdm_contract", "stubdm_nodes"]),
    ("stubdm_contract", ["The xenstore contract of a stubdomain start"],
     "the xenstore contract of a stubdomain start",
     ["stubdm_dm_argv", "stubdm_nodes", "stubdm_spawn"]),
    ("stubdm_wait_running", ["Waiting for the device model"],
     "wait for a stubdomain's device model to run",
     ["stubdm_op", "stubdm_spawn"]),
    ("stubdm_qmp", ["QMP: the connection to the QEMU in a stubdomain"],
     "the QMP connection to the QEMU in a stubdomain",
     ["stubdm_qmp_proxy", "stubdm_op", "stubdm_spawn"]),
    ("stubdm_qmp_proxy", ["QMP multiplexing proxy"],
     "share one stubdomain QMP connection between clients",
     ["stubdm_qmp"]),
    ("stubdm_pci", ["PCI passthrough (docs/pci.md)"],
     "PCI passthrough to a stubdomain's guest",
     ["stubdm_spawn", "stubdm_qmp"]),
    ("stubdm_spawn", ["Spawning stubdomains"],
     "start, save, restore and destroy Linux stubdomains",
     ["stubdm_contract", "stubdm_wait_running", "stubdm_qmp",
      "stubdm_console", "stubdm_pci"]),
    ("stubdm_console", ["Console backend"],
     "serve a stubdomain's PV consoles",
     ["stubdm_spawn", "stubdm_contract"]),
]

OVERVIEW = """\
.SH OVERVIEW
A dom0 toolstack (libxl, xapi, or its own) uses libstubdm to run an HVM
guest's QEMU inside a small PV "stubdomain" instead of in dom0: encode the
QEMU argv into xenstore
.RB ( stubdm_dm_argv (3)),
write the rest of the xenstore contract
.RB ( stubdm_contract (3)),
wait from any event loop for the device model to report "running"
.RB ( stubdm_wait_running (3)),
hold the QMP connection to the QEMU in the stubdomain
.RB ( stubdm_qmp (3)),
or do the whole start, save, restore and destroy of a stubdomain
.RB ( stubdm_spawn (3)),
serving its consoles
.RB ( stubdm_console (3))
and passing PCI devices through
.RB ( stubdm_pci (3)).
Programs link with
.B "pkg\\-config \\-\\-libs libstubdm"
or CMake's
.BR "find_package(libstubdm)" " and " libstubdm::stubdm .
.SS The context and the event loop
A process makes one
.B stubdm_ctx
per event loop
.RB ( stubdm_ctx (3))
and tells it how to be driven
.RB ( stubdm_loop (3)):
loop hooks (the library asks for fds and one timer), a poll array, or its
own wait
.RB ( stubdm_ctx_run_once ()).
Every long action is an operation
.RB ( stubdm_op (3)):
the starting call validates, returns at once, and the completion callback
runs later from a dispatch entry point
.RB ( stubdm_ctx_fd_ready (),
.BR stubdm_ctx_timer_fired (),
.BR stubdm_ctx_poll_dispatch (),
.BR stubdm_ctx_run_once ()
or a
.B *_sync
wrapper), on the thread that called it; never from the call that starts
the operation, even when it fails at once.
A dispatch entry point called from inside a callback on the same ctx
returns
.BR STUBDM_ERECURSIVE .
Freeing an operation, a QMP handle or the ctx from inside a callback is
safe.
Nothing the library does in a dispatch waits for another process.
The blocking
.B *_sync
forms run the ctx's loop until their operation ends and are for programs
without a loop of their own.
.SS Errors
Every function that can fail returns 0
.RB ( STUBDM_OK )
or a negative
.B STUBDM_E*
code (below); treat unknown codes as
.BR STUBDM_EFAIL .
Where a function's page lists no codes (the option setters, mostly), it
returns 0,
.B STUBDM_EINVAL
(a NULL object or a value out of range) or
.B STUBDM_ENOMEM
(copying a string); getters on a NULL handle return 0 or NULL.
When a function that takes a ctx fails,
.BR stubdm_ctx_errmsg ()
holds a sentence saying what failed and why, and
.BR stubdm_ctx_os_errno ()
the errno of the failing system or Xen call (0 when there was none); an
operation's own message is
.BR stubdm_op_errmsg ().
Both stay valid until the next call on that ctx.
.SS Ownership
Handles are opaque, created by the library and released by the matching
.B *_free
function, which accepts NULL.
Strings passed in are copied unless the page says otherwise; strings
returned are borrowed ("valid until ...") unless the page says "free with
free()".
.SS Threads
A ctx and everything created from it belong to one thread at a time; the
library creates no threads of its own and has no global state, so
separate ctxs are fully independent.
Exactly two functions may be called on a ctx from any thread (and from a
signal handler) while its owner uses it:
.BR stubdm_ctx_wake ()
and
.BR stubdm_ctx_interrupt ().
.SS Fork
Every descriptor the library opens is close-on-exec.
A child that forks without exec and goes on to use the library calls
.BR stubdm_ctx_postfork_child ()
on each ctx it inherited, then only
.BR stubdm_ctx_free ()
on it.
"""

BANNER = re.compile(r"^/\* -{20,}\n \* (.+?)\n \* -{20,}(.*?)\*/\n",
                    re.M | re.S)


def sections(text):
    """{title: (intro text, body)} for each banner section."""
    out = {}
    matches = list(BANNER.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        intro = m.group(2)
        intro = "\n".join(re.sub(r"^ \*( |$)", "", l)
                          for l in intro.split("\n")).strip()
        out[m.group(1).strip()] = (intro, text[m.end():end])
    return out


def comment_text(c):
    """The text of a /* */ or /** */ comment, without the stars."""
    c = re.sub(r"^/\*\*?", "", c)
    c = re.sub(r"\*/$", "", c)
    lines = []
    for l in c.split("\n"):
        l = re.sub(r"^\s*\* ?", "", l) if l.strip().startswith("*") else l
        lines.append(l.rstrip())
    return "\n".join(lines).strip("\n")


def items(body):
    """(doc, code) for each declaration, #define or free comment."""
    out = []
    doc = None
    i = 0
    lines = body.split("\n")
    while i < len(lines):
        l = lines[i]
        s = l.strip()
        if not s or s.startswith("#endif") or s.startswith("#ifdef") \
                or s.startswith("#if ") or s == "}" or \
                s.startswith('extern "C"') or s.startswith("#ifndef"):
            i += 1
            continue
        if s.startswith("/*"):
            buf = [l]
            while "*/" not in lines[i]:
                i += 1
                buf.append(lines[i])
            if doc is not None:
                out.append((doc, None))
            doc = comment_text("\n".join(buf).strip())
            i += 1
            continue
        if s.startswith("#define"):
            buf = [l]
            while lines[i].rstrip().endswith("\\"):
                i += 1
                buf.append(lines[i])
            out.append((doc, "\n".join(buf)))
            doc = None
            i += 1
            continue
        buf = [l]
        depth = l.count("{") - l.count("}")
        while not (depth == 0 and re.search(r";\s*(/\*.*\*/)?\s*$",
                                             lines[i])):
            i += 1
            if i >= len(lines):
                break
            buf.append(lines[i])
            depth += lines[i].count("{") - lines[i].count("}")
        out.append((doc, "\n".join(buf)))
        doc = None
        i += 1
    if doc is not None:
        out.append((doc, None))
    return out


def func_name(code):
    if code is None or "STUBDM_EXPORT" not in code:
        return None
    m = re.search(r"(stubdm_\w+)\s*\(", code)
    return m.group(1) if m else None


def type_name(code):
    m = re.search(r"typedef\s+.*?(stubdm_\w+)\s*[;(]", code, re.S)
    if m and "{" not in code:
        return m.group(1)
    m = re.search(r"}\s*(stubdm_\w+)\s*;", code)
    if m:
        return m.group(1)
    m = re.search(r"^(?:typedef\s+)?(struct|enum)\s+(stubdm_\w+)", code)
    if m:
        return m.group(1) + " " + m.group(2)
    m = re.search(r"#define\s+(\w+)", code)
    return m.group(1) if m else None


def prototype(code):
    """The declaration without STUBDM_EXPORT, continuation lines moved
    left as far as the removed word."""
    lines = code.split("\n")
    lines[0] = lines[0].replace("STUBDM_EXPORT ", "")
    shift = len("STUBDM_EXPORT ")
    out = [lines[0]]
    for l in lines[1:]:
        lead = len(l) - len(l.lstrip())
        out.append(" " * max(4, lead - shift) + l.lstrip())
    return "\n".join(out)


def esc(s):
    s = s.replace("\\", "\\e")
    s = s.replace("-", "\\-") if False else s
    return s


def text_lines(s):
    """Escaped roff text lines, wrapped to 78 columns."""
    out = []
    for line in textwrap.wrap(s, 78, break_long_words=False,
                              break_on_hyphens=False):
        line = esc(line)
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return out


def code_block(s):
    out = [".PP", ".EX"]
    for l in s.split("\n"):
        l = esc(l.rstrip())
        if l.startswith((".", "'")):
            l = "\\&" + l
        out.append(l)
    out.append(".EE")
    return out


def prose(doc):
    """A doc comment as roff: paragraphs, indented blocks as examples,
    @param as tagged paragraphs.  Returns (lines, return text)."""
    out = []
    ret = None
    paras = []  # (kind, text)
    cur = []
    kind = "p"
    for l in doc.split("\n"):
        m = re.match(r"@(param(?:\[\w+\])?|return)\s*(.*)", l.strip())
        if m:
            if cur:
                paras.append((kind, cur))
            kind = m.group(1)
            cur = [m.group(2)]
            continue
        if not l.strip():
            if cur:
                paras.append((kind, cur))
            cur, kind = [], "p"
            continue
        if kind == "p" and l.startswith("  ") and not cur:
            kind = "pre"
        elif kind == "p" and l.startswith("  ") and cur and \
                not cur[-1].startswith("  ") and \
                (l.lstrip().startswith(("-", "->")) or l.startswith("    ")):
            paras.append((kind, cur))
            cur, kind = [], "pre"
        elif kind == "pre" and not l.startswith("  "):
            paras.append((kind, cur))
            cur, kind = [], "p"
        cur.append(l)
    if cur:
        paras.append((kind, cur))
    for kind, ls in paras:
        if kind == "pre":
            common = min(len(l) - len(l.lstrip()) for l in ls if l.strip())
            out += code_block("\n".join(l[common:] for l in ls))
        elif kind == "p":
            out.append(".PP")
            out += text_lines(" ".join(l.strip() for l in ls))
        elif kind == "return":
            ret = " ".join(l.strip() for l in ls)
            out.append(".PP")
            out += text_lines("Returns " + ret)
        else:
            words = " ".join(l.strip() for l in ls).split(None, 1)
            name = words[0] if words else ""
            desc = words[1] if len(words) > 1 else ""
            out.append(".TP")
            tag = ".I " + esc(name)
            if kind != "param":
                tag = ".IR " + esc(name) + ' " (' + kind[6:-1] + ')"'
            out.append(tag)
            out += text_lines(desc) or ["\\&"]
    return out, ret


def page(name, titles, summary, see, secs, examples_dir):
    funcs, body, rets = [], [], []
    for title in titles:
        intro, text = secs[title]
        body.append(".SS " + esc(title))
        first = True
        if intro:
            # the introduction keeps its own paragraphs and lists
            lines, _ = prose(intro)
            body += lines[1:] if lines and lines[0] == ".PP" else lines
            first = False
        for doc, code in items(text):
            fn = func_name(code)
            if code is None:
                lines, _ = prose(doc)
                if first and lines and lines[0] == ".PP":
                    lines = lines[1:]
                body += lines
                first = False
                continue
            first = False
            if fn:
                funcs.append((fn, prototype(code)))
                body.append(".TP")
                body.append(".BR " + fn + " ()")
                if doc:
                    lines, ret = prose(doc)
                    # a tagged paragraph's body: .PP would end it
                    body += [".RS"] + (lines[1:] if lines[0] == ".PP"
                                       else lines) + [".RE"]
                    if ret:
                        rets.append((fn, ret))
                else:
                    body.append("\\&")
            else:
                if doc:
                    lines, _ = prose(doc)
                    body += lines
                body += code_block(re.sub(r"\n{2,}", "\n", code))
    names = ", ".join(f for f, _ in funcs)
    out = ['.\\" Generated by docs/man/gen-man3.py from include/libstubdm.h:',
           '.\\" edit the header (or the script), not this file.',
           '.TH %s 3 %s "libstubdm 0.1.0" "libstubdm Manual"'
           % (name.upper(), DATE),
           ".SH NAME"]
    nm = name if name == "libstubdm" or not funcs else names
    if name == "libstubdm":
        nm = "libstubdm, " + names
    # "\-" after escaping: NAME is what lexgrog (whatis, apropos) reads
    out += [l.replace("\x01", "\\-")
            for l in text_lines(nm + " \x01 " + summary)]
    out += [".SH SYNOPSIS", ".nf", ".B #include <libstubdm.h>", ".PP"]
    for _, proto in funcs:
        for l in proto.split("\n"):
            l = esc(l)
            out.append("\\&" + l if l.startswith((".", "'")) else l)
    out += [".fi", ".PP", "Link with", ".IR \\-lstubdm ."]
    if name == "libstubdm":
        out += OVERVIEW.rstrip("\n").split("\n")
    out += [".SH DESCRIPTION"]
    out += body
    out += [".SH RETURN VALUE"]
    out += text_lines(
        "0 (STUBDM_OK) on success or a negative STUBDM_E* code, with "
        "stubdm_ctx_errmsg() saying what failed; see libstubdm(3), "
        "\"Errors\".  Where nothing more is said below, an int-returning "
        "function returns 0, STUBDM_EINVAL or STUBDM_ENOMEM, and a getter "
        "on a NULL handle returns 0 or NULL.")
    for fn, ret in rets:
        out += [".TP", ".BR " + fn + " ()"]
        out += text_lines(ret)
    ex = os.path.join(examples_dir, name + ".c")
    if os.path.exists(ex):
        with open(ex) as f:
            src = f.read()
        src = re.sub(r"\A/\*.*?\*/\n", "", src, flags=re.S)
        out += [".SH EXAMPLE"] + code_block(src.strip("\n"))[1:]
    out += [".SH SEE ALSO"]
    refs = [".BR %s (3)," % s for s in see]
    if name != "libstubdm" and "libstubdm" not in see:
        refs.insert(0, ".BR libstubdm (3),")
    refs += [".BR stubdm\\-ctl (1),", ".BR stubdmd (8)"]
    out += refs
    out += [".PP", "The documents under docs/ of the source tree, and",
            ".IR include/libstubdm.h ,", "which this page is made from."]
    # a paragraph macro right after a heading is redundant (mandoc -Tlint)
    out = [l for i, l in enumerate(out)
           if not (l == ".PP" and i and out[i - 1].startswith((".SS", ".SH")))]
    return "\n".join(out) + "\n", [f for f, _ in funcs]


def main():
    header, outdir = sys.argv[1], sys.argv[2]
    with open(header) as f:
        secs = sections(f.read())
    covered = {t for _, ts, _, _ in PAGES for t in ts}
    missing = [t for t in secs if t not in covered]
    if missing:
        sys.exit("gen-man3.py: header sections without a page: %s" % missing)
    examples = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "examples")
    links = []
    for name, titles, summary, see in PAGES:
        text, funcs = page(name, titles, summary, see, secs, examples)
        with open(os.path.join(outdir, name + ".3"), "w") as f:
            f.write(text)
        links += ["%s %s" % (fn, name) for fn in funcs if fn != name]
    with open(os.path.join(outdir, "man3.links"), "w") as f:
        f.write("# FUNCTION PAGE: man3/FUNCTION.3 links to man3/PAGE.3 "
                "(docs/man/gen-man3.py)\n")
        f.write("\n".join(links) + "\n")


if __name__ == "__main__":
    main()
