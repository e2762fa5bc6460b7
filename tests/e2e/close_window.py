"""Closes every top-level X window titled like argv[1] (default "Snowgate") as a window manager
does: a WM_DELETE_WINDOW client message, which GTK turns into the window's close request. Xvfb
runs no window manager, so the tests and scripts/measure-app close the app's window this way.

Exits 0 when at least one window was asked to close, 3 when none was found."""

import sys

from Xlib import X, display, protocol

title = sys.argv[1] if len(sys.argv) > 1 else "Snowgate"
d = display.Display()
wm_delete = d.intern_atom("WM_DELETE_WINDOW")
wm_protocols = d.intern_atom("WM_PROTOCOLS")


def walk(w):
    yield w
    try:
        children = w.query_tree().children
    except Exception:  # gone while walking
        children = []
    for c in children:
        yield from walk(c)


asked = 0
for w in walk(d.screen().root):
    try:
        if w.get_wm_name() == title and wm_delete in (w.get_wm_protocols() or []):
            message = protocol.event.ClientMessage(
                window=w, client_type=wm_protocols, data=(32, [wm_delete, X.CurrentTime, 0, 0, 0])
            )
            w.send_event(message)
            asked += 1
    except Exception:  # a window that went away meanwhile
        pass
d.flush()
sys.exit(0 if asked else 3)
