/* SPDX-License-Identifier: MIT */
/*
 * A small Varlink client over Cockpit's bridge: a `stream` channel to the
 * daemon's UNIX socket.  Each message is a JSON object ended by a NUL byte.
 *
 * The channel is binary: in a text channel the bridge turns a NUL into
 * U+FFFD on the way in, and a NUL sent from the page ends the whole session.
 * Replies arrive in pieces of up to 64 KiB, or several in one piece, so the
 * bytes are buffered and split on NUL.  Calls on one connection are answered
 * in the order they were made: each reply settles the oldest pending call.
 *
 * window.Varlink.connect(path) -> connection with
 *   call(method, parameters) -> Promise of the reply's parameters; rejects
 *     with a VarlinkError (error: the Varlink error name, parameters) or,
 *     when the connection fails, with a VarlinkError whose `problem` is the
 *     bridge's (for example "not-found" when the socket does not exist);
 *   close().
 */
(function () {
    "use strict";

    const encoder = new TextEncoder();
    const decoder = new TextDecoder("utf-8", { fatal: false });

    class VarlinkError extends Error {
        constructor(error, parameters, problem) {
            super(error || problem || "disconnected");
            this.error = error || null;
            this.parameters = parameters || {};
            this.problem = problem || null;
        }
    }

    function concat(a, b) {
        const out = new Uint8Array(a.length + b.length);
        out.set(a, 0);
        out.set(b, a.length);
        return out;
    }

    function connect(path) {
        const channel = cockpit.channel({ payload: "stream", unix: path, binary: true });
        const pending = [];
        let buffer = new Uint8Array(0);
        let closed = null;

        function fail(problem, message) {
            if (closed)
                return;
            closed = new VarlinkError(null, { message: message || "" }, problem || "disconnected");
            while (pending.length)
                pending.shift().reject(closed);
        }

        function dispatch(bytes) {
            let reply;
            try {
                reply = JSON.parse(decoder.decode(bytes));
            } catch (e) {
                reply = null;
            }
            const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
            if (!isObject(reply) || ("parameters" in reply && !isObject(reply.parameters)) ||
                ("error" in reply && typeof reply.error !== "string")) {
                fail("protocol-error", "the daemon sent a message that is not a Varlink reply");
                channel.close("protocol-error");
                return;
            }
            const call = pending.shift();
            if (!call)
                return; /* an answer nobody asked for: ignore it */
            if (reply.error)
                call.reject(new VarlinkError(reply.error, reply.parameters));
            else
                call.resolve(reply.parameters || {});
        }

        channel.addEventListener("message", function (event, data) {
            buffer = buffer.length ? concat(buffer, data) : new Uint8Array(data);
            let start = 0;
            for (;;) {
                const end = buffer.indexOf(0, start);
                if (end < 0)
                    break;
                dispatch(buffer.subarray(start, end));
                start = end + 1;
            }
            buffer = start ? buffer.slice(start) : buffer;
        });
        channel.addEventListener("close", function (event, options) {
            fail(options.problem || "disconnected", options.message);
        });

        return {
            call: function (method, parameters) {
                if (closed)
                    return Promise.reject(closed);
                return new Promise(function (resolve, reject) {
                    pending.push({ resolve: resolve, reject: reject });
                    const message = { method: method };
                    if (parameters && Object.keys(parameters).length)
                        message.parameters = parameters;
                    const bytes = encoder.encode(JSON.stringify(message));
                    channel.send(concat(bytes, new Uint8Array([0])));
                });
            },
            get closed() {
                return closed !== null;
            },
            close: function () {
                fail("disconnected");
                channel.close();
            },
        };
    }

    window.Varlink = { connect: connect, VarlinkError: VarlinkError };
})();
