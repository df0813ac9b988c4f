# SPDX-License-Identifier: MIT
"""Headless Chromium driven over the DevTools protocol on a pipe.

`chromium --remote-debugging-pipe` reads commands on fd 3 and writes
answers and events on fd 4: JSON messages each ended by a NUL byte (the
framing of Varlink).  No WebDriver, no downloads: the Debian package
`chromium` and this file.

- ``Chromium``: starts the browser in a session of its own, attaches to
  its page and offers navigate / evaluate / wait_for / click / type /
  press / screenshot.  ``close()`` ends it and every process it started,
  each by its PID.
- ``session_pids(sid)`` / ``stop_session(sid)``: the processes of a
  session (a program started with start_new_session=True and whatever it
  started), and stopping them one PID at a time.

Waits are on conditions in the page (a MutationObserver inside the page
resolves a promise), never sleeps.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEFAULT_TIMEOUT = 10.0


class CDPError(AssertionError):
    pass


def session_pids(sid):
    """PIDs of the live processes whose session id is `sid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces.
        fields = stat[stat.rindex(")") + 2:].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            pids.append(int(entry))
    return pids


def stop_session(sid, timeout=10.0):
    """SIGTERM each process of session `sid` by its PID, then SIGKILL those
    left after `timeout`; the PIDs that needed SIGKILL."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = session_pids(sid)
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed


def _high_fd(fd):
    """A close-on-exec copy of `fd` numbered 10 or above (so that the child
    can move it onto 3 or 4 without clobbering another); closes `fd`."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Chromium:
    """One headless Chromium with one page, driven over fds 3 and 4."""

    def __init__(self, width=1280, height=860, log_path=None):
        self.profile = tempfile.mkdtemp(prefix="akt-chromium-")
        to_browser_r, to_browser_w = (_high_fd(fd) for fd in os.pipe())
        from_browser_r, from_browser_w = (_high_fd(fd) for fd in os.pipe())

        argv = [CHROMIUM, "--headless=new", "--remote-debugging-pipe", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--password-store=basic",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "about:blank"]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")
        # bash (dash takes fds 0-9 only) puts the pipes on fds 3 and 4 and
        # becomes Chromium; no preexec_fn, as the test process may run threads.
        r, w = to_browser_r, from_browser_w
        argv = ["/bin/bash", "-c", f'exec "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', "chromium"] + argv
        self.log = open(log_path or os.devnull, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, pass_fds=(r, w), start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.wfd, self.rfd = to_browser_w, from_browser_r
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None
        try:
            self._attach(width, height)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ protocol

    def _send(self, method, params, session):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]
        return self.next_id

    def _recv(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError("Chromium did not answer in time")
            r, _, _ = select.select([self.rfd], [], [], left)
            if not r:
                continue
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise CDPError(f"Chromium closed its DevTools pipe (exit {self.proc.poll()})")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=True, timeout=DEFAULT_TIMEOUT):
        """Send a command (to the page's session unless session=False) and
        return its result; raise CDPError on an error answer."""
        sid = self.session if session is True else session or None
        want = self._send(method, params, sid)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def _attach(self, width, height):
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        pages = [t for t in targets if t["type"] == "page"]
        target = pages[0]["targetId"] if pages else \
            self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # ------------------------------------------------------------ the page

    def navigate(self, url, timeout=DEFAULT_TIMEOUT):
        """Load `url` and wait for its load event."""
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            msg = self._recv(deadline)
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression, timeout=DEFAULT_TIMEOUT):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                           "returnByValue": True, "userGesture": True},
                      timeout=timeout + 2)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError(f"{expression}\n  threw: {text}")
        return r["result"].get("value")

    def wait_for(self, condition, timeout=DEFAULT_TIMEOUT, what=None):
        """Wait until the JavaScript expression `condition` is truthy in the
        page, re-checked on every change of the DOM; its value."""
        ms = int(timeout * 1000)
        script = f"""new Promise((resolve, reject) => {{
            let observer = null, timer = null;
            const check = () => {{
                let v;
                try {{ v = ({condition}); }} catch (e) {{ v = undefined; }}
                if (v) {{
                    if (observer) observer.disconnect();
                    if (timer) clearTimeout(timer);
                    resolve(v);
                    return true;
                }}
                return false;
            }};
            if (check()) return;
            observer = new MutationObserver(check);
            observer.observe(document, {{subtree: true, childList: true, attributes: true,
                                         characterData: true}});
            timer = setTimeout(() => {{
                observer.disconnect();
                reject(new Error("timed out"));
            }}, {ms});
        }})"""
        try:
            return self.evaluate(script, timeout=timeout)
        except CDPError as e:
            body = self.evaluate("document.body ? document.body.innerText : ''")
            raise CDPError(f"waited {timeout}s for {what or condition}: {e}\n"
                           f"--- the page says:\n{body}") from None

    def click(self, selector):
        """Click the element `selector` names (it must be there and enabled)."""
        sel = json.dumps(selector)
        self.evaluate(f"""(() => {{
            const e = document.querySelector({sel});
            if (!e) throw new Error("no element " + {sel});
            if (e.disabled) throw new Error("disabled: " + {sel});
            e.scrollIntoView({{block: "center"}});
            e.click();
        }})()""")

    def fill(self, selector, text):
        """Focus `selector` and type `text` into it, as keystrokes would."""
        sel = json.dumps(selector)
        self.evaluate(f"""(() => {{
            const e = document.querySelector({sel});
            if (!e) throw new Error("no element " + {sel});
            e.focus();
            e.value = "";
            e.dispatchEvent(new Event("input", {{bubbles: true}}));
        }})()""")
        if text:
            self.call("Input.insertText", {"text": text})

    def press(self, key):
        """Press and release a key ("Enter", "Escape", "Tab", "ArrowDown"...)
        where the focus is."""
        codes = {"Enter": 13, "Escape": 27, "Tab": 9, "ArrowUp": 38, "ArrowDown": 40}
        params = {"key": key, "code": key, "windowsVirtualKeyCode": codes.get(key, 0)}
        if key == "Enter":
            params["text"] = "\r"
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", **params})
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **params})

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    # ------------------------------------------------------------ the end

    def close(self):
        """End the browser and every process it started; the PIDs that had
        to be killed (none when it closed cleanly)."""
        if self.proc.poll() is None:
            try:
                self._send("Browser.close", {}, None)
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        left = stop_session(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
        return left
