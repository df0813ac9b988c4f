/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the Cockpit page's Varlink client (cockpit/varlink.js),
 * the one decoder of the page: the bytes a socket sends, split on NUL.
 * Not libFuzzer (the decoder is JavaScript): test_cockpit.py runs it in
 * headless Chromium, after varlink.js, for APIKEYD_JS_FUZZ_SECONDS
 * (default 5); a failure names the seed that replays it.
 *
 * Each round makes calls on a connection whose channel is this file's
 * stand-in for cockpit.channel, then feeds it the answers cut at random
 * points: NUL-ended JSON replies and errors with random text (any Unicode,
 * cut inside characters), sometimes bytes that are not JSON or not UTF-8,
 * sometimes the channel closing.  What must hold:
 *  - each call settles once, in order, with exactly its answer;
 *  - the first answer that is not a reply (a JSON object) rejects its call and every later
 *    one with problem "protocol-error" and closes the channel;
 *  - a close rejects every call still waiting with the close's problem;
 *  - nothing throws out of the channel's event handlers.
 */
/* exported fuzzVarlink */
"use strict";

function fuzzVarlink(seconds, seed) {
    let state = seed >>> 0 || 1;
    function rand(n) { /* xorshift32 */
        state ^= state << 13;
        state >>>= 0;
        state ^= state >>> 17;
        state ^= state << 5;
        state >>>= 0;
        return state % n;
    }
    const encoder = new TextEncoder();
    const POOL = ["a", "Z", "0", " ", "\"", "\\", "/", "{", "}", "é", "ключ", "日本", "🔑",
                  "\u2028", "\uFFFD", "\u00A0", "\u0080"];

    function text() {
        let s = "";
        for (let i = rand(12); i > 0; i--)
            s += POOL[rand(POOL.length)];
        return s;
    }

    /* A stand-in for cockpit.channel: the test feeds "message" and "close". */
    function FakeChannel() {
        this.handlers = { message: [], close: [] };
        this.sent = [];
        this.closed = false;
    }
    FakeChannel.prototype.addEventListener = function (name, fn) {
        this.handlers[name].push(fn);
    };
    FakeChannel.prototype.send = function (bytes) {
        this.sent.push(bytes);
    };
    FakeChannel.prototype.close = function () {
        this.closed = true;
    };
    FakeChannel.prototype.emit = function (name, detail) {
        for (const fn of this.handlers[name])
            fn({}, detail);
    };

    let channel = null;
    const saved = window.cockpit;
    window.cockpit = { channel: function () { channel = new FakeChannel(); return channel; } };

    async function round(roundSeed) {
        state = roundSeed;
        const conn = window.Varlink.connect("/fuzz");
        const n = 1 + rand(8);
        const expected = [];
        let chunks = [];
        let broken = -1; /* index of the first answer that is not a reply */
        let closeAt = -1; /* close the channel after this many answers */
        if (rand(6) === 0)
            closeAt = rand(n + 1);
        for (let i = 0; i < n; i++) {
            let bytes;
            const kind = rand(10);
            if (kind === 0 && broken < 0) {
                const junk = [0x7b, 0xff, 0xfe, 0x80, 0x22, 0x41];
                bytes = new Uint8Array(1 + rand(6)).map(() => junk[rand(junk.length)]);
                broken = i;
                expected.push({ problem: "protocol-error" });
            } else if (kind < 3) {
                const params = { reason: text() };
                expected.push({ error: "io.apikeyd.Keys.Fuzz" + rand(3), parameters: params });
                bytes = encoder.encode(JSON.stringify({ error: expected[i].error, parameters: params }));
            } else {
                const params = { s: text(), n: rand(1000), list: [text(), text()] };
                expected.push({ parameters: params });
                bytes = encoder.encode(JSON.stringify({ parameters: params }));
            }
            if (closeAt >= 0 && i >= closeAt)
                break;
            chunks.push(bytes, new Uint8Array([0]));
        }
        const total = chunks.reduce((a, c) => a + c.length, 0);
        const stream = new Uint8Array(total);
        let at = 0;
        for (const c of chunks) {
            stream.set(c, at);
            at += c.length;
        }
        chunks = null;

        const results = [];
        const calls = [];
        for (let i = 0; i < n; i++) {
            const p = conn.call("io.apikeyd.Keys.Fuzz", { i: i });
            calls.push(p.then((v) => { results[i] = { ok: v }; },
                              (e) => { results[i] = { err: e }; }));
        }
        /* Every call was sent, each one NUL-ended. */
        if (channel.sent.length !== n)
            return "sent " + channel.sent.length + " messages for " + n + " calls";
        for (const m of channel.sent) {
            if (m[m.length - 1] !== 0 || m.indexOf(0) !== m.length - 1)
                return "a call was not one NUL-ended message";
        }

        /* Feed the stream in random pieces. */
        let pos = 0;
        try {
            while (pos < stream.length) {
                const len = 1 + rand(rand(4) === 0 ? 64 : 8);
                channel.emit("message", stream.subarray(pos, Math.min(stream.length, pos + len)));
                pos += len;
            }
            if (closeAt >= 0)
                channel.emit("close", { problem: "terminated" });
        } catch (e) {
            return "an event handler threw: " + e;
        }
        await Promise.all(calls);

        /* Answers delivered: those before the close; the first of them that
         * is not a reply fails it and every later call. */
        const answered = closeAt >= 0 ? Math.min(closeAt, n) : n;
        const failedAt = broken >= 0 && broken < answered ? broken : -1;
        const got = (r) => JSON.stringify(r.ok || { error: r.err.error, problem: r.err.problem,
                                                    parameters: r.err.parameters });
        for (let i = 0; i < n; i++) {
            const r = results[i];
            const want = expected[i];
            if (!r)
                return "call " + i + " of " + n + " never settled";
            if (failedAt >= 0 && i >= failedAt) {
                if (!r.err || r.err.problem !== "protocol-error")
                    return "call " + i + ", at or after an answer that is not a reply: " + got(r);
            } else if (i >= answered) {
                if (!r.err || r.err.problem !== "terminated")
                    return "call " + i + ", after the close: " + got(r);
            } else if (want.error) {
                if (!r.err || r.err.error !== want.error ||
                    JSON.stringify(r.err.parameters) !== JSON.stringify(want.parameters))
                    return "call " + i + ": want " + JSON.stringify(want) + ", got " + got(r);
            } else if (!r.ok || JSON.stringify(r.ok) !== JSON.stringify(want.parameters)) {
                return "call " + i + ": want " + JSON.stringify(want.parameters) + ", got " + got(r);
            }
        }
        if (failedAt >= 0 && !channel.closed)
            return "the channel stayed open after an answer that is not a reply";
        return null;
    }

    return (async function () {
        const deadline = Date.now() + seconds * 1000;
        let runs = 0;
        let roundSeed = seed >>> 0 || 1;
        try {
            while (Date.now() < deadline) {
                const failure = await round(roundSeed);
                if (failure)
                    return { runs: runs, seed: roundSeed, failure: failure };
                runs++;
                state = roundSeed;
                roundSeed = (rand(0xffffffff) + 1) >>> 0;
            }
        } finally {
            window.cockpit = saved;
        }
        return { runs: runs, failure: null };
    })();
}
