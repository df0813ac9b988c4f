/* SPDX-License-Identifier: MIT */
/*
 * The API keys page: the keys apikeyd shows the logged-in user (every key
 * for admins, their own for others), their status filter, the create
 * dialog, the token shown once, row actions and, for admins, the shared
 * secret.  The page decides nothing itself: the bridge runs as the user,
 * so the daemon's authorization applies to every call.
 *
 * Layout: COLUMNS describe the table, ROW_ACTIONS the menu of each row
 * (methods the daemon adds later slot in there); a key's name opens its
 * detail, with its recent uses; openDialog() is the one modal every dialog
 * uses.
 */
(function () {
    "use strict";

    const IFACE = "io.apikeyd.Keys";
    const DEFAULT_SOCKET = "/run/apikeyd/io.apikeyd.Keys";
    const PERMISSIONS = ["create", "read", "write", "delete", "invite"];
    const STATUS_LABELS = {
        enabled: "Enabled",
        disabled: "Disabled",
        revoked: "Revoked",
        expired: "Expired",
    };
    const ROLE_LABELS = { admin: "Admin", readonly: "Read only", custom: "Custom" };

    /* What the page shows; never a token or the shared secret. */
    const state = {
        loaded: false,
        admin: false,
        user: null,
        keys: [],
        error: null,
        statusFilter: "all",
        textFilter: "",
        sort: { column: null, descending: false },
    };

    /* ------------------------------------------------------------ the daemon */

    /* The socket comes from the package's manifest ("config": {"socket"}),
     * which an administrator may override in /etc/cockpit/apikeys.override.json
     * and a user in ~/.config/cockpit/apikeys.override.json.  Never from the
     * URL: a link must not be able to point the page at another socket. */
    function socketPath() {
        const manifest = cockpit.manifests && cockpit.manifests.apikeys;
        const configured = manifest && manifest.config && manifest.config.socket;
        if (typeof configured === "string" && configured.startsWith("/"))
            return configured;
        return DEFAULT_SOCKET;
    }

    /* Calls that change nothing, safe to send again on a new connection. */
    const READ_ONLY = new Set(["GetStatus", "List", "Get", "GetSharedSecret", "GetUsage"]);
    let connection = null;

    /* One connection, made again when the daemon has closed it (it closes
     * idle clients after client_timeout, apikeyd.conf).  A read-only call
     * that meets a connection closed under it is sent once more. */
    async function call(method, parameters) {
        const reused = connection && !connection.closed;
        if (!reused)
            connection = window.Varlink.connect(socketPath());
        try {
            return await connection.call(IFACE + "." + method, parameters || {});
        } catch (err) {
            if (!(reused && err.problem === "disconnected" && READ_ONLY.has(method)))
                throw err;
            connection = window.Varlink.connect(socketPath());
            return connection.call(IFACE + "." + method, parameters || {});
        }
    }

    async function listAllKeys() {
        let keys = [];
        let cursor = null;
        do {
            const page = await call("List", cursor ? { cursor: cursor } : {});
            keys = keys.concat(page.keys || []);
            cursor = page.cursor || null;
        } while (cursor);
        return keys;
    }

    /* Could the daemon not be reached at all (rather than refuse a call)? */
    function isUnreachable(err) {
        return !!(err && err.problem);
    }

    function errorMessage(err) {
        const p = (err && err.parameters) || {};
        if (err && err.problem) {
            const path = socketPath();
            switch (err.problem) {
            case "not-found":
                return "The API key service (apikeyd) is not running: its socket " + path +
                    " does not exist or does not answer. An administrator starts it with " +
                    "\u201Csystemctl start apikeyd.socket\u201D.";
            case "access-denied":
                return "You may not connect to the API key service's socket " + path + ".";
            default:
                return "The connection to the API key service at " + path + " failed (" +
                    err.problem + (p.message ? ": " + p.message : "") + ").";
            }
        }
        const reason = p.reason ? ": " + p.reason : ".";
        switch (err && err.error) {
        case IFACE + ".PermissionDenied":
            return "Not permitted" + reason;
        case IFACE + ".PolicyViolation":
            return "Refused by the installation's policy" + reason;
        case IFACE + ".NameTaken":
            return p.owner + " already has a key named \u201C" + p.name + "\u201D.";
        case IFACE + ".NoSuchKey":
            return "The key " + (p.id || "") + " no longer exists.";
        case IFACE + ".KeyRevoked":
            return "The key is revoked: it cannot be enabled or changed.";
        case IFACE + ".TooManyConnections":
            return "The API key service is busy; try again in a moment.";
        case IFACE + ".InternalError":
            return "The key store failed" + reason;
        case "org.varlink.service.InvalidParameter":
            return "The daemon refused the " + (p.parameter || "request") + reason;
        default:
            return "The API key service answered " + ((err && (err.error || err.message)) ||
                String(err)) + ".";
        }
    }

    /* ------------------------------------------------------------ helpers */

    function el(tag, attrs, children) {
        const node = document.createElement(tag);
        for (const name in attrs || {}) {
            const value = attrs[name];
            if (value === null || value === undefined || value === false)
                continue;
            if (name === "text")
                node.textContent = value;
            else if (name === "class")
                node.className = value;
            else if (name.startsWith("on"))
                node.addEventListener(name.slice(2), value);
            else
                node.setAttribute(name, value === true ? "" : value);
        }
        for (const child of [].concat(children || [])) {
            if (child !== null && child !== undefined && child !== false)
                node.append(child);
        }
        return node;
    }

    const $ = (id) => document.getElementById(id);

    const relativeFormat = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
    const UNITS = [
        ["year", 365 * 86400], ["month", 30 * 86400], ["week", 7 * 86400],
        ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1],
    ];

    function relativeTime(iso) {
        const seconds = (Date.parse(iso) - Date.now()) / 1000;
        for (const [unit, size] of UNITS) {
            if (Math.abs(seconds) >= size || unit === "second") {
                if (unit === "second" && Math.abs(seconds) < 45)
                    return seconds >= 0 ? "in a few seconds" : "just now";
                return relativeFormat.format(Math.round(seconds / size), unit);
            }
        }
        return iso;
    }

    function fullTime(iso) {
        const d = new Date(iso);
        return d.toLocaleString(undefined, { dateStyle: "full", timeStyle: "long" }) +
            " (" + iso + ")";
    }

    function timeCell(iso, never) {
        if (!iso)
            return el("span", { class: "muted", text: never });
        return el("time", { datetime: iso, title: fullTime(iso), text: relativeTime(iso) });
    }

    function announce(text) {
        $("page-status").textContent = text;
    }

    function showAlert(text) {
        $("page-alert-text").textContent = text;
        $("page-alert").hidden = false;
    }

    function hideAlert() {
        $("page-alert").hidden = true;
        $("page-alert-text").textContent = "";
    }

    /* ------------------------------------------------------------ dialogs */

    /*
     * openDialog({title, body, primary: {label, danger}, cancelLabel, onSubmit})
     * A modal with the page behind it inert.  Enter in a field submits (it is
     * a form), Escape and Cancel close it, Tab stays inside.  onSubmit(dialog)
     * may be async; it closes the dialog itself when done.  Returns the dialog:
     * {node, form, close(), setError(text), fieldError(id, text), clearErrors(),
     *  setBusy(bool)}.
     */
    function openDialog(options) {
        const opener = document.activeElement;
        const titleId = "dialog-title-" + Math.random().toString(36).slice(2);
        const alertBox = el("div", { class: "alert alert-danger alert-inline", role: "alert",
                                     hidden: true });
        const primary = options.primary ? el("button", {
            type: "submit",
            class: "btn " + (options.primary.danger ? "btn-danger" : "btn-primary"),
            id: options.primary.id,
            text: options.primary.label,
        }) : null;
        const cancel = el("button", { type: "button", class: primary ? "btn btn-link" : "btn btn-secondary",
                                      text: options.cancelLabel || (primary ? "Cancel" : "Close"),
                                      "data-dialog-close": true });
        const form = el("form", { class: "modal-form", novalidate: true }, [
            el("header", { class: "modal-header" }, [
                el("h2", { id: titleId, class: "modal-title" + (options.danger ? " modal-title-danger" : ""),
                           text: options.title }),
                el("button", { type: "button", class: "btn btn-plain modal-close",
                               "aria-label": "Close", text: "\u2715", "data-dialog-close": true }),
            ]),
            el("div", { class: "modal-body" }, [].concat(options.body || [], alertBox)),
            el("footer", { class: "modal-footer" }, [primary, cancel].concat(options.extraButtons || [])),
        ]);
        const box = el("div", { class: "modal" + (options.wide ? " modal-wide" : ""), role: "dialog",
                                "aria-modal": "true", "aria-labelledby": titleId, id: options.id }, form);
        const backdrop = el("div", { class: "modal-backdrop" }, box);
        let busy = false;

        const dialog = {
            node: box,
            form: form,
            primary: primary,
            close: function () {
                if (!backdrop.isConnected)
                    return;
                if (options.onClose)
                    options.onClose(dialog);
                backdrop.remove();
                $("page").inert = document.querySelector(".modal-backdrop") !== null;
                if (opener && opener.isConnected && opener.focus)
                    opener.focus();
                else
                    $("create-button").focus();
            },
            setError: function (text) {
                alertBox.textContent = text;
                alertBox.hidden = !text;
            },
            fieldError: function (id, text) {
                const field = $(id);
                const slot = $(id + "-error");
                if (!field || !slot)
                    return false;
                slot.textContent = text;
                slot.hidden = false;
                field.setAttribute("aria-invalid", "true");
                field.closest(".form-group").classList.add("has-error");
                return true;
            },
            clearErrors: function () {
                dialog.setError("");
                for (const slot of box.querySelectorAll(".field-error")) {
                    slot.textContent = "";
                    slot.hidden = true;
                }
                for (const field of box.querySelectorAll("[aria-invalid]"))
                    field.removeAttribute("aria-invalid");
                for (const group of box.querySelectorAll(".has-error"))
                    group.classList.remove("has-error");
            },
            setBusy: function (value) {
                busy = value;
                box.setAttribute("aria-busy", value ? "true" : "false");
                if (primary)
                    primary.disabled = value || (options.primary.enabled ? !options.primary.enabled() : false);
            },
        };

        form.addEventListener("submit", async function (event) {
            event.preventDefault();
            if (busy || !options.onSubmit || (primary && primary.disabled))
                return;
            dialog.clearErrors();
            dialog.setBusy(true);
            try {
                await options.onSubmit(dialog);
            } finally {
                dialog.setBusy(false);
            }
        });
        for (const closer of box.querySelectorAll("[data-dialog-close]"))
            closer.addEventListener("click", dialog.close);
        box.addEventListener("keydown", function (event) {
            if (event.key === "Escape") {
                event.preventDefault();
                event.stopPropagation();
                dialog.close();
            } else if (event.key === "Tab") {
                const focusable = Array.from(box.querySelectorAll(
                    "button, input, select, textarea, [tabindex]:not([tabindex='-1'])"))
                    .filter((n) => !n.disabled && n.offsetParent !== null);
                if (!focusable.length)
                    return;
                const first = focusable[0];
                const last = focusable[focusable.length - 1];
                if (event.shiftKey && document.activeElement === first) {
                    event.preventDefault();
                    last.focus();
                } else if (!event.shiftKey && document.activeElement === last) {
                    event.preventDefault();
                    first.focus();
                }
            }
        });

        document.body.append(backdrop);
        $("page").inert = true;
        if (options.primary && options.primary.enabled)
            dialog.setBusy(false);
        const initial = box.querySelector("[autofocus]") ||
            box.querySelector(".modal-body input, .modal-body select, .modal-body textarea, .modal-body button") ||
            primary || cancel;
        initial.focus();
        return dialog;
    }

    function formGroup(id, label, control, help, required) {
        control.id = id;
        control.setAttribute("aria-describedby", id + "-error" + (help ? " " + id + "-help" : ""));
        return el("div", { class: "form-group" }, [
            el("label", { for: id, class: "form-label" }, [
                label, required ? el("span", { class: "required", "aria-hidden": "true", text: " *" }) : null,
            ]),
            control,
            help ? el("p", { class: "form-help", id: id + "-help", text: help }) : null,
            el("p", { class: "field-error", id: id + "-error", hidden: true }),
        ]);
    }

    /* ------------------------------------------------------------ create */

    /* Where the daemon's InvalidParameter `parameter` names a field. */
    const CREATE_FIELDS = {
        name: "create-name",
        description: "create-description",
        owner: "create-owner",
        role: "create-role-admin",
        permissions: "create-permissions",
        scope: "create-scope",
        sources: "create-sources",
        not_before: "create-not-before",
        expires: "create-expires",
        max_uses: "create-max-uses",
        rate_limit: "create-rate-limit",
    };

    /* Sources, not before, max uses and rate limit: the key's conditions and
     * limits.  For a new key (no `key`) each is sent when given; for an edit
     * each starts with the key's value and is sent when changed, an emptied
     * one as the daemon's "none" (sources: anywhere; not before: now; max
     * uses: 0; rate limit: none).  The daemon checks the values. */
    function conditionFields(prefix, key) {
        const sources = el("input", { type: "text", class: "form-control", autocomplete: "off",
                                      spellcheck: "false", placeholder: "10.0.0.0/8, build.example.com" });
        const notBefore = el("input", { type: "text", class: "form-control form-control-short",
                                        autocomplete: "off", spellcheck: "false", placeholder: "2h" });
        const maxUses = el("input", { type: "text", class: "form-control form-control-short",
                                      autocomplete: "off", inputmode: "numeric" });
        const rateLimit = el("input", { type: "text", class: "form-control form-control-short",
                                        autocomplete: "off", spellcheck: "false", placeholder: "100/1m" });
        const initial = {
            sources: key && key.sources ? key.sources.join(", ") : "",
            notBefore: (key && key.not_before) || "",
            maxUses: key && typeof key.max_uses === "number" ? String(key.max_uses) : "",
            rateLimit: (key && key.rate_limit) || "",
        };
        sources.value = initial.sources;
        notBefore.value = initial.notBefore;
        maxUses.value = initial.maxUses;
        rateLimit.value = initial.rateLimit;
        const changed = (field, was) => !key || field.value.trim() !== was;
        return {
            groups: [
                formGroup(prefix + "-sources", "Sources", sources,
                          "Addresses, CIDR blocks or host names the key may be used from, separated " +
                              "by commas; empty: anywhere."),
                formGroup(prefix + "-not-before", "Not before", notBefore,
                          "The key works only from then on: a duration from now such as 2h, or an " +
                              "ISO 8601 date or time; empty: at once."),
                formGroup(prefix + "-max-uses", "Max uses", maxUses,
                          "How many successful verifies the key may have in all; empty: no limit."),
                formGroup(prefix + "-rate-limit", "Rate limit", rateLimit,
                          "Successful verifies a window may have, such as 100/1m; empty: no limit."),
            ],
            fields: {
                sources: prefix + "-sources",
                not_before: prefix + "-not-before",
                max_uses: prefix + "-max-uses",
                rate_limit: prefix + "-rate-limit",
            },
            fill: function (dialog, params) {
                const uses = maxUses.value.trim();
                if (uses && !/^[0-9]+$/.test(uses)) {
                    dialog.fieldError(prefix + "-max-uses", "A whole number, 1 or more.");
                    maxUses.focus();
                    return false;
                }
                const entries = sources.value.split(/[\s,]+/).filter((s) => s);
                if (changed(sources, initial.sources) && (entries.length || key))
                    params.sources = entries;
                if (changed(notBefore, initial.notBefore) && (notBefore.value.trim() || key))
                    params.not_before = notBefore.value.trim() || "now";
                if (changed(maxUses, initial.maxUses) && (uses || key))
                    params.max_uses = uses ? Number(uses) : 0;
                if (changed(rateLimit, initial.rateLimit) && (rateLimit.value.trim() || key))
                    params.rate_limit = rateLimit.value.trim() || "none";
                return true;
            },
        };
    }

    function openCreateDialog() {
        const name = el("input", { type: "text", class: "form-control", autocomplete: "off",
                                   "aria-required": "true", autofocus: true });
        const description = el("textarea", { class: "form-control", rows: "2" });
        const owner = el("input", { type: "text", class: "form-control", autocomplete: "off",
                                    spellcheck: "false" });
        let owners = null;
        if (state.admin) {
            /* Any member: offer the owners of the keys listed, and oneself. */
            owner.placeholder = state.user || "";
            owner.setAttribute("list", "create-owner-list");
            owners = el("datalist", { id: "create-owner-list" },
                        Array.from(new Set([state.user].concat(state.keys.map((k) => k.owner))))
                            .filter((o) => o).sort().map((o) => el("option", { value: o })));
        } else {
            owner.value = state.user || "";
            owner.readOnly = true;
        }

        const roleRadios = ["admin", "readonly", "custom"].map((role) => el("label", { class: "radio" }, [
            el("input", { type: "radio", name: "role", value: role, id: "create-role-" + role,
                          checked: role === "readonly" }),
            " " + ROLE_LABELS[role],
        ]));
        const permissionBoxes = PERMISSIONS.map((perm) => el("label", { class: "checkbox" }, [
            el("input", { type: "checkbox", value: perm, id: "create-permission-" + perm }),
            " " + perm,
        ]));
        const permissions = el("fieldset", { class: "permissions", id: "create-permissions", hidden: true }, [
            el("legend", { class: "visually-hidden", text: "Permissions" }),
        ].concat(permissionBoxes));
        const roleGroup = el("div", { class: "form-group" }, [
            el("span", { class: "form-label", id: "create-role-label", text: "Role" }),
            el("div", { class: "radio-row", role: "radiogroup", "aria-labelledby": "create-role-label" }, roleRadios),
            el("p", { class: "field-error", id: "create-role-admin-error", hidden: true }),
            permissions,
            el("p", { class: "field-error", id: "create-permissions-error", hidden: true }),
        ]);
        function roleChanged() {
            permissions.hidden = !$("create-role-custom").checked;
        }
        for (const label of roleRadios)
            label.querySelector("input").addEventListener("change", roleChanged);

        const scope = el("input", { type: "text", class: "form-control", autocomplete: "off",
                                    spellcheck: "false", placeholder: "sshd, sudo" });

        const expiresKind = el("select", { class: "form-control" }, [
            el("option", { value: "default", text: "The installation's default" }),
            el("option", { value: "never", text: "Never" }),
            el("option", { value: "duration", text: "After a duration" }),
            el("option", { value: "date", text: "On a date" }),
        ]);
        const duration = el("input", { type: "text", class: "form-control form-control-short",
                                       id: "create-expires-duration",
                                       placeholder: "30d", "aria-label": "Duration, such as 45m, 12h, 30d or 2w",
                                       hidden: true });
        const date = el("input", { type: "date", class: "form-control form-control-short", id: "create-expires-date",
                                   "aria-label": "Expiry date", hidden: true });
        expiresKind.addEventListener("change", function () {
            duration.hidden = expiresKind.value !== "duration";
            date.hidden = expiresKind.value !== "date";
        });
        const expiresGroup = formGroup("create-expires", "Expires", expiresKind,
                                       "A duration such as 45m, 12h, 30d or 2w; on a date, the key " +
                                           "works through that day, UTC.");
        expiresGroup.querySelector(".form-help").before(el("div", { class: "inline-controls" }, [duration, date]));

        const conditions = conditionFields("create");

        const body = [
            formGroup("create-name", "Name", name, null, true),
            formGroup("create-description", "Description", description),
            formGroup("create-owner", "Owner", owner,
                      state.admin ? "A user name, or an application name; empty: yourself."
                          : "Your own keys only."),
            owners,
            roleGroup,
            formGroup("create-scope", "Scope", scope,
                      "Services the key may be used for, separated by commas; empty: any service."),
            expiresGroup,
        ].concat(conditions.groups);

        openDialog({
            id: "create-dialog",
            title: "Create API key",
            body: body,
            wide: true,
            primary: { label: "Create", id: "create-submit" },
            onSubmit: async function (dialog) {
                const params = { name: name.value };
                if (!name.value.trim()) {
                    dialog.fieldError("create-name", "A name is required.");
                    name.focus();
                    return;
                }
                if (description.value)
                    params.description = description.value;
                if (state.admin && owner.value.trim())
                    params.owner = owner.value.trim();
                const role = document.querySelector("#create-dialog input[name=role]:checked").value;
                params.role = role;
                if (role === "custom")
                    params.permissions = permissionBoxes.map((l) => l.querySelector("input"))
                        .filter((box) => box.checked).map((box) => box.value);
                const entries = scope.value.split(/[\s,]+/).filter((s) => s);
                if (entries.length)
                    params.scope = entries;
                if (expiresKind.value === "never") {
                    params.expires = "never";
                } else if (expiresKind.value === "duration") {
                    params.expires = duration.value.trim();
                } else if (expiresKind.value === "date") {
                    if (!date.value) {
                        dialog.fieldError("create-expires", "Choose a date.");
                        return;
                    }
                    params.expires = date.value;
                }
                if (!conditions.fill(dialog, params))
                    return;

                let reply;
                try {
                    reply = await call("Create", params);
                } catch (err) {
                    showCreateError(dialog, err);
                    return;
                }
                dialog.close();
                showToken(reply.key, reply.token);
                reply = null;
                refresh();
            },
        });
    }

    function showCreateError(dialog, err) {
        const p = err.parameters || {};
        let field = null;
        let text = errorMessage(err);
        if (err.error === "org.varlink.service.InvalidParameter" && CREATE_FIELDS[p.parameter]) {
            field = CREATE_FIELDS[p.parameter];
            /* The reason says what is wrong and what is allowed. */
            text = p.reason ? p.reason.charAt(0).toUpperCase() + p.reason.slice(1)
                : "The daemon refused this value.";
        } else if (err.error === IFACE + ".NameTaken") {
            field = "create-name";
        }
        if (!(field && dialog.fieldError(field, text)))
            dialog.setError(text);
        if (field && $(field))
            $(field).focus();
        if (isUnreachable(err))
            refresh();
    }

    /* The token, once.  Closing the dialog removes it from the page. */
    function showToken(key, token, title) {
        const value = el("input", { type: "text", class: "form-control token-value", id: "token-value",
                                    readonly: true, spellcheck: "false", "aria-label": "The new key's token" });
        value.value = token;
        const copied = el("span", { class: "copy-status", role: "status", "aria-live": "polite" });
        const copy = el("button", { type: "button", class: "btn btn-secondary", id: "token-copy", text: "Copy" });
        copy.addEventListener("click", async function () {
            value.select();
            try {
                await navigator.clipboard.writeText(value.value);
                copied.textContent = "Copied";
            } catch (e) {
                copied.textContent = document.execCommand && document.execCommand("copy")
                    ? "Copied" : "Select the token and copy it";
            }
        });
        token = null;
        openDialog({
            id: "token-dialog",
            title: title || "API key \u201C" + key.name + "\u201D created",
            cancelLabel: "Close",
            wide: true,
            body: [
                el("div", { class: "alert alert-warning alert-inline", id: "token-warning" }, [
                    el("strong", { text: "Copy the token now. " }),
                    "It will not be shown again: only a hash of it is kept. If it is lost, revoke " +
                        "the key and create a new one.",
                ]),
                el("div", { class: "copy-row" }, [value, copy]),
                copied,
                el("p", { class: "form-help", text: "Key id " + key.id + ", owner " + key.owner + "." }),
            ],
            onClose: function () {
                value.value = "";
                copied.textContent = "";
            },
        });
        value.select();
    }

    /* ------------------------------------------------------------ shared secret */

    function openSharedSecretDialog() {
        const hidden = "\u2022".repeat(24);
        const value = el("input", { type: "text", class: "form-control token-value", id: "shared-secret-value",
                                    readonly: true, "aria-label": "The shared secret" });
        value.value = hidden;
        let revealed = false;
        const show = el("button", { type: "button", class: "btn btn-secondary", id: "shared-secret-show",
                                    text: "Show" });
        const rotate = el("button", { type: "button", class: "btn btn-danger", id: "shared-secret-rotate",
                                      text: "Rotate\u2026" });
        let dialog = null;

        async function reveal(method) {
            try {
                const reply = await call(method);
                value.value = reply.secret;
                revealed = true;
                show.textContent = "Hide";
                dialog.setError("");
            } catch (err) {
                dialog.setError(errorMessage(err));
            }
        }
        show.addEventListener("click", function () {
            if (revealed) {
                value.value = hidden;
                revealed = false;
                show.textContent = "Show";
            } else {
                reveal("GetSharedSecret");
            }
        });
        rotate.addEventListener("click", function () {
            openDialog({
                id: "rotate-dialog",
                title: "Rotate the shared secret?",
                danger: true,
                body: el("p", { text: "Verify answers are signed with the new secret from then on; " +
                    "integrations that check signatures need it before they accept them again." }),
                primary: { label: "Rotate", danger: true, id: "rotate-confirm" },
                onSubmit: async function (confirm) {
                    confirm.close();
                    await reveal("RotateSharedSecret");
                    announce("The shared secret was rotated.");
                },
            });
        });

        dialog = openDialog({
            id: "shared-secret-dialog",
            title: "API shared secret",
            wide: true,
            body: [
                el("p", { text: "Integrations that receive Verify answers second-hand check their " +
                    "signature with this secret (BLAKE2b, see the daemon's interface)." }),
                el("div", { class: "copy-row" }, [value, show]),
            ],
            extraButtons: [rotate],
            onClose: function () {
                value.value = "";
            },
        });
    }

    /* ------------------------------------------------------------ detail */

    /* A link to another key's detail (Replaces, Replaced by): its id. */
    function keyLink(id, field) {
        return el("button", { type: "button", class: "btn btn-link key-link", "data-key-link": id,
                              "data-field-link": field, text: id,
                              onclick: function () { openDetailDialog(id); } });
    }

    /* The key's fields, each shown only when the key has it; then its
     * recent uses (GetUsage). */
    function detailRows(k) {
        const rows = [
            ["id", "Id", k.id],
            ["name", "Name", k.name],
            ["description", "Description", k.description],
            ["owner", "Owner", k.owner],
            ["role", "Role", ROLE_LABELS[k.role] || k.role],
            ["permissions", "Permissions", k.permissions.length ? k.permissions.join(", ") : "None"],
            ["scope", "Scope", k.scope.length ? k.scope.join(", ") : "Any service"],
            ["status", "Status", statusLabel(k)],
            ["disabled_reason", "Disabled because", k.disabled_reason === "unused"
                ? "unused (not used for longer than the installation allows)" : k.disabled_reason],
            ["sources", "Sources", k.sources ? (k.sources.length ? k.sources.join(", ") : "Anywhere") : null],
            ["not_before", "Not before", k.not_before ? timeCell(k.not_before) : null],
            ["expires_at", "Expires", timeCell(k.expires_at, "Never")],
            ["uses", "Uses left", typeof k.max_uses === "number"
                ? (typeof k.uses_left === "number" ? k.uses_left : "?") + " of " + k.max_uses : null],
            ["rate_limit", "Rate limit", k.rate_limit ? k.rate_limit + " (successful verifies a window)" : null],
            ["replaces", "Replaces", k.replaces ? [keyLink(k.replaces, "replaces"),
                k.retire_on_first_use ? " (which stops working at this key's first use)" : null] : null],
            ["replaced_by", "Replaced by", k.replaced_by ? [keyLink(k.replaced_by, "replaced_by"),
                " (this key works until it expires)"] : null],
            ["created_at", "Created", [timeCell(k.created_at), k.created_by ? " by " + k.created_by : null]],
            ["parent", "Created through", k.parent],
            ["last_used", "Last used", [timeCell(k.last_used_at, "Never"),
                k.last_used_at && k.last_used_service ? " for " + k.last_used_service : null,
                k.last_used_at && k.last_used_from ? " from " + k.last_used_from : null]],
            ["last_used_host", "Last used on host", k.last_used_host],
        ];
        return el("dl", { class: "detail-list", id: "detail-fields" }, rows
            .filter((r) => r[2] !== null && r[2] !== undefined && r[2] !== "")
            .map((r) => el("div", { class: "detail-row", "data-field": r[0] }, [
                el("dt", { text: r[1] }), el("dd", {}, r[2])])));
    }

    function usageTable(uses) {
        if (!uses.length)
            return el("p", { class: "muted", id: "usage-empty", text: "No recorded uses." });
        const dash = () => el("span", { class: "muted", text: "\u2014" });
        return el("table", { class: "table table-compact", id: "usage-table" }, [
            el("thead", {}, el("tr", {}, ["Time", "Service", "From", "TTY", "Answer"]
                .map((t) => el("th", { scope: "col", text: t })))),
            el("tbody", {}, uses.map((u) => el("tr", {}, [
                el("td", {}, timeCell(u.time)),
                el("td", {}, u.service || dash()),
                el("td", {}, u.rhost || dash()),
                el("td", {}, u.tty || dash()),
                el("td", { class: "usage-code", text: u.code }),
            ]))),
        ]);
    }

    let detailDialog = null;

    async function openDetailDialog(id) {
        if (detailDialog)
            detailDialog.close();
        const fields = el("div", { id: "detail-body", "aria-busy": "true" },
                          el("p", { class: "muted", text: "Loading\u2026" }));
        const usage = el("div", { id: "detail-usage", "aria-busy": "true" });
        const dialog = openDialog({
            id: "detail-dialog",
            title: "API key " + id,
            wide: true,
            body: [fields, el("h3", { class: "detail-heading", text: "Recent uses" }), usage],
            onClose: function () {
                if (detailDialog === dialog)
                    detailDialog = null;
            },
        });
        detailDialog = dialog;
        try {
            const reply = await call("Get", { id: id });
            dialog.node.querySelector(".modal-title").textContent =
                "API key \u201C" + reply.key.name + "\u201D";
            fields.replaceChildren(detailRows(reply.key));
        } catch (err) {
            fields.replaceChildren();
            dialog.setError(errorMessage(err));
        }
        fields.setAttribute("aria-busy", "false");
        try {
            const reply = await call("GetUsage", { id: id });
            usage.replaceChildren(usageTable(reply.uses || []));
        } catch (err) {
            usage.replaceChildren(el("p", { class: "field-error", id: "usage-error",
                                            text: errorMessage(err) }));
        }
        usage.setAttribute("aria-busy", "false");
    }

    /* ------------------------------------------------------------ edit */

    function openEditDialog(key) {
        const conditions = conditionFields("edit", key);
        openDialog({
            id: "edit-dialog",
            title: "Conditions and limits of \u201C" + key.name + "\u201D",
            wide: true,
            body: conditions.groups,
            primary: { label: "Save", id: "edit-submit" },
            onSubmit: async function (dialog) {
                const params = { id: key.id };
                if (!conditions.fill(dialog, params))
                    return;
                if (Object.keys(params).length > 1) {
                    try {
                        await call("Update", params);
                    } catch (err) {
                        const p = err.parameters || {};
                        const field = err.error === "org.varlink.service.InvalidParameter"
                            ? conditions.fields[p.parameter] : null;
                        const text = field && p.reason
                            ? p.reason.charAt(0).toUpperCase() + p.reason.slice(1) : errorMessage(err);
                        if (!(field && dialog.fieldError(field, text)))
                            dialog.setError(text);
                        if (field && $(field))
                            $(field).focus();
                        if (isUnreachable(err))
                            refresh();
                        return;
                    }
                    announce("Changed " + key.name + ".");
                }
                dialog.close();
                refresh();
            },
        });
    }

    /* ------------------------------------------------------------ rotate */

    const ROTATE_FIELDS = { grace: "rotate-grace", retire_on_first_use: "rotate-retire" };

    function openRotateDialog(key) {
        const grace = el("input", { type: "text", class: "form-control form-control-short",
                                    autocomplete: "off", spellcheck: "false", placeholder: "24h" });
        const retire = el("input", { type: "checkbox", id: "rotate-retire" });
        openDialog({
            id: "key-rotate-dialog",
            title: "Rotate API key \u201C" + key.name + "\u201D?",
            body: [
                el("p", { text: "A new key with a new token takes this key's name and every other " +
                    "field. This key keeps working until its grace ends, then expires." }),
                formGroup("rotate-grace", "Grace", grace,
                          "How long the old token keeps working, such as 0, 1h or 7d; empty: the " +
                              "installation's default."),
                el("div", { class: "form-group" }, [
                    el("label", { class: "checkbox", for: "rotate-retire" },
                       [retire, " Retire the old key at the new key's first use"]),
                    el("p", { class: "field-error", id: "rotate-retire-error", hidden: true }),
                ]),
            ],
            primary: { label: "Rotate", id: "key-rotate-confirm" },
            onSubmit: async function (dialog) {
                const params = { id: key.id };
                if (grace.value.trim())
                    params.grace = grace.value.trim();
                if (retire.checked)
                    params.retire_on_first_use = true;
                let reply;
                try {
                    reply = await call("Rotate", params);
                } catch (err) {
                    const p = err.parameters || {};
                    const field = err.error === "org.varlink.service.InvalidParameter"
                        ? ROTATE_FIELDS[p.parameter] : null;
                    const text = field && p.reason
                        ? p.reason.charAt(0).toUpperCase() + p.reason.slice(1) : errorMessage(err);
                    if (!(field && dialog.fieldError(field, text)))
                        dialog.setError(text);
                    if (isUnreachable(err))
                        refresh();
                    return;
                }
                dialog.close();
                showToken(reply.key, reply.token, "API key \u201C" + reply.key.name + "\u201D rotated");
                reply = null;
                refresh();
            },
        });
    }

    /* ------------------------------------------------------------ row actions */

    async function runAction(key, method, done) {
        hideAlert();
        try {
            await call(method, { id: key.id });
            announce(done);
        } catch (err) {
            showAlert("\u201C" + key.name + "\u201D: " + errorMessage(err));
        }
        await refresh();
    }

    function confirmRevoke(key) {
        openDialog({
            id: "revoke-dialog",
            title: "Revoke API key \u201C" + key.name + "\u201D?",
            danger: true,
            body: el("p", { text: "The key stops working at once, with every key created through it. " +
                "A revoked key cannot be enabled again; it stays listed as revoked." }),
            primary: { label: "Revoke", danger: true, id: "revoke-confirm" },
            onSubmit: async function (dialog) {
                dialog.close();
                await runAction(key, "Revoke", "Revoked " + key.name + ".");
            },
        });
    }

    function confirmDelete(key) {
        const typed = el("input", { type: "text", class: "form-control", autocomplete: "off",
                                    spellcheck: "false" });
        const matches = () => typed.value === key.name;
        let dialog = null;
        typed.addEventListener("input", function () {
            dialog.primary.disabled = !matches();
        });
        dialog = openDialog({
            id: "delete-dialog",
            title: "Delete API key \u201C" + key.name + "\u201D?",
            danger: true,
            body: [
                el("p", { text: "This cannot be undone. The key is removed; the keys created through " +
                    "it are revoked." }),
                formGroup("delete-confirm-name", "Type the key's name, \u201C" + key.name +
                    "\u201D, to confirm", typed),
            ],
            primary: { label: "Delete", danger: true, id: "delete-confirm", enabled: matches },
            onSubmit: async function (d) {
                d.close();
                await runAction(key, "Delete", "Deleted " + key.name + ".");
            },
        });
    }

    /* The menu of each row, in order.  shown(key) says whether it applies. */
    const ROW_ACTIONS = [
        {
            id: "disable", label: "Disable",
            shown: (k) => k.status === "enabled",
            run: (k) => runAction(k, "Disable", "Disabled " + k.name + "."),
        },
        {
            id: "enable", label: "Enable",
            shown: (k) => k.status === "disabled",
            run: (k) => runAction(k, "Enable", "Enabled " + k.name + "."),
        },
        {
            id: "revoke", label: "Revoke\u2026", danger: true,
            shown: (k) => k.status !== "revoked",
            run: confirmRevoke,
        },
        {
            id: "delete", label: "Delete\u2026", danger: true,
            shown: () => true,
            run: confirmDelete,
        },
        {
            id: "edit", label: "Conditions and limits\u2026",
            shown: (k) => k.status !== "revoked",
            run: openEditDialog,
        },
        {
            id: "rotate", label: "Rotate\u2026",
            shown: (k) => k.status === "enabled" && !k.replaced_by,
            run: openRotateDialog,
        },
    ];

    let openMenu = null;

    function closeMenu(focusToggle) {
        if (!openMenu)
            return;
        const { menu, toggle } = openMenu;
        openMenu = null;
        menu.hidden = true;
        toggle.setAttribute("aria-expanded", "false");
        if (focusToggle)
            toggle.focus();
    }

    function actionsCell(key) {
        const actions = ROW_ACTIONS.filter((a) => a.shown(key));
        const items = actions.map((action) => el("li", { role: "none" }, el("button", {
            type: "button", role: "menuitem", tabindex: "-1",
            class: "menu-item" + (action.danger ? " menu-item-danger" : ""),
            "data-action": action.id, text: action.label,
            onclick: function () {
                closeMenu(true);
                action.run(key);
            },
        })));
        const menuId = "menu-" + key.id;
        const menu = el("ul", { class: "menu", role: "menu", id: menuId, hidden: true }, items);
        const toggle = el("button", {
            type: "button", class: "btn btn-plain kebab", "aria-haspopup": "menu",
            "aria-expanded": "false", "aria-controls": menuId, "aria-label": "Actions for " + key.name,
            text: "\u22EE",
        });
        function focusItem(index) {
            const buttons = Array.from(menu.querySelectorAll("button"));
            if (buttons.length)
                buttons[(index + buttons.length) % buttons.length].focus();
        }
        toggle.addEventListener("click", function (event) {
            event.stopPropagation();
            const wasOpen = openMenu && openMenu.menu === menu;
            closeMenu(false);
            if (!wasOpen) {
                menu.hidden = false;
                toggle.setAttribute("aria-expanded", "true");
                openMenu = { menu: menu, toggle: toggle };
                focusItem(0);
            }
        });
        menu.addEventListener("keydown", function (event) {
            const buttons = Array.from(menu.querySelectorAll("button"));
            const at = buttons.indexOf(document.activeElement);
            if (event.key === "ArrowDown") {
                event.preventDefault();
                focusItem(at + 1);
            } else if (event.key === "ArrowUp") {
                event.preventDefault();
                focusItem(at - 1);
            } else if (event.key === "Escape" || event.key === "Tab") {
                event.preventDefault();
                closeMenu(true);
            }
        });
        return el("div", { class: "kebab-wrap" }, [toggle, menu]);
    }

    /* ------------------------------------------------------------ table */

    /* As apikeyctl's list: "Disabled (unused)" when the daemon disabled it, and
     * a rotated key still working: when its grace ends. */
    function statusLabel(k) {
        if (k.replaced_by && k.status === "enabled" && k.expires_at)
            return "Rotated, grace ends " + relativeTime(k.expires_at);
        return (STATUS_LABELS[k.status] || k.status) + (k.disabled_by_admin ? " by an admin" : "") +
            (k.disabled_reason ? " (" + k.disabled_reason + ")" : "");
    }

    const COLUMNS = [
        {
            id: "name", label: "Name",
            sort: (k) => k.name.toLowerCase(),
            render: (k) => [
                el("div", { class: "key-name" }, el("button", {
                    type: "button", class: "btn btn-link key-name-link", text: k.name,
                    title: "Details of " + k.name, onclick: () => openDetailDialog(k.id),
                })),
                k.description ? el("div", { class: "key-description", text: k.description }) : null,
            ],
        },
        { id: "owner", label: "Owner", sort: (k) => k.owner, render: (k) => k.owner },
        { id: "role", label: "Role", sort: (k) => k.role, render: (k) => ROLE_LABELS[k.role] || k.role },
        {
            id: "scope", label: "Scope",
            sort: (k) => k.scope.join(","),
            render: (k) => k.scope.length ? k.scope.join(", ") : el("span", { class: "muted", text: "Any service" }),
        },
        {
            id: "permissions", label: "Permissions",
            sort: (k) => k.permissions.length,
            render: (k) => k.permissions.length ? k.permissions.join(", ")
                : el("span", { class: "muted", text: "None" }),
        },
        {
            id: "expires", label: "Expires",
            sort: (k) => k.expires_at || "\uffff",
            render: (k) => timeCell(k.expires_at, "Never"),
        },
        {
            id: "status", label: "Status",
            sort: (k) => k.status,
            render: (k) => el("span", {
                class: "badge badge-" + k.status,
                title: k.disabled_by_admin ? "Disabled by an admin: only an admin may enable it" : null,
                text: statusLabel(k),
            }),
        },
        {
            id: "last_used", label: "Last used",
            sort: (k) => k.last_used_at || "",
            render: (k) => [
                timeCell(k.last_used_at, "Never"),
                k.last_used_at && (k.last_used_service || k.last_used_from)
                    ? el("div", { class: "key-description", text: [k.last_used_service, k.last_used_from]
                        .filter((s) => s).join(" from ") })
                    : null,
            ],
        },
        { id: "actions", label: "Actions", hiddenLabel: true, render: actionsCell },
    ];

    function matchesFilters(key) {
        if (state.statusFilter !== "all" && key.status !== state.statusFilter)
            return false;
        const text = state.textFilter.trim().toLowerCase();
        if (!text)
            return true;
        return [key.name, key.description || "", key.owner, key.id]
            .some((s) => s.toLowerCase().includes(text));
    }

    function sortedKeys(keys) {
        const column = COLUMNS.find((c) => c.id === state.sort.column);
        const out = keys.slice();
        if (!column) {
            out.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
            return out;
        }
        const sign = state.sort.descending ? -1 : 1;
        out.sort(function (a, b) {
            const x = column.sort(a);
            const y = column.sort(b);
            return (x < y ? -1 : x > y ? 1 : 0) * sign;
        });
        return out;
    }

    function renderHead() {
        const row = $("keys-head");
        row.replaceChildren();
        for (const column of COLUMNS) {
            const th = el("th", { scope: "col", class: "col-" + column.id });
            if (column.hiddenLabel) {
                th.append(el("span", { class: "visually-hidden", text: column.label }));
            } else if (column.sort) {
                const active = state.sort.column === column.id;
                th.setAttribute("aria-sort", active ? (state.sort.descending ? "descending" : "ascending") : "none");
                th.append(el("button", {
                    type: "button", class: "sort-button" + (active ? " sort-active" : ""),
                    "data-sort": column.id,
                    onclick: function () {
                        if (state.sort.column === column.id)
                            state.sort.descending = !state.sort.descending;
                        else
                            state.sort = { column: column.id, descending: false };
                        render();
                        document.querySelector("[data-sort='" + column.id + "']").focus();
                    },
                }, [column.label, el("span", { class: "sort-indicator", "aria-hidden": "true",
                                                  text: active ? (state.sort.descending ? " \u25BC" : " \u25B2")
                                                      : " \u21C5" })]));
            } else {
                th.textContent = column.label;
            }
            row.append(th);
        }
    }

    function render() {
        const page = $("page");
        page.setAttribute("aria-busy", state.loaded ? "false" : "true");
        $("shared-secret-button").hidden = !state.admin || !!state.error;
        $("create-button").disabled = !!state.error;

        const unreachable = state.error && isUnreachable(state.error);
        $("daemon-error").hidden = !state.error;
        if (state.error) {
            $("daemon-error-text").textContent = errorMessage(state.error);
            $("daemon-error").querySelector("h3").textContent = unreachable
                ? "The API key service cannot be reached" : "The keys could not be listed";
        }

        const shown = sortedKeys(state.keys.filter(matchesFilters));
        const emptyState = $("empty-state");
        emptyState.hidden = !state.loaded || !!state.error || shown.length > 0;
        if (!emptyState.hidden) {
            const filtered = state.keys.length > 0;
            $("empty-state-title").textContent = filtered ? "No keys match the filter" : "No API keys";
            $("empty-state-text").textContent = filtered
                ? "Choose another status or clear the text filter."
                : (state.admin ? "No key has been created yet." : "You have no API keys yet.");
            $("empty-state-action").textContent = filtered ? "Clear all filters" : "Create API key";
            $("empty-state-action").dataset.role = filtered ? "clear" : "create";
        }

        $("table-wrap").hidden = !!state.error || shown.length === 0;
        renderHead();
        const body = $("keys-body");
        closeMenu(false);
        body.replaceChildren(...shown.map(function (key) {
            return el("tr", { "data-key-id": key.id, "data-status": key.status },
                      COLUMNS.map((c) => el("td", { class: "col-" + c.id, "data-label": c.label }, c.render(key))));
        }));
        page.dataset.keys = String(shown.length);
    }

    let refreshing = null;
    let refreshAgain = false;

    /* List the keys again (the daemon decides which); one refresh at a time,
     * and one more if asked for meanwhile. */
    function refresh() {
        if (refreshing) {
            refreshAgain = true;
            return refreshing;
        }
        refreshing = (async function () {
            do {
                refreshAgain = false;
                try {
                    const status = await call("GetStatus");
                    state.admin = !!status.admin;
                    state.keys = await listAllKeys();
                    state.error = null;
                } catch (err) {
                    state.error = err;
                    state.keys = [];
                    state.admin = false;
                }
                state.loaded = true;
                render();
            } while (refreshAgain);
            refreshing = null;
        })();
        return refreshing;
    }

    /* ------------------------------------------------------------ theme */

    /* Cockpit's shell keeps the chosen style in localStorage "shell:style". */
    function applyTheme() {
        let style = null;
        try {
            style = window.localStorage.getItem("shell:style");
        } catch (e) {
            style = null;
        }
        const dark = style === "dark" ||
            ((!style || style === "auto") && window.matchMedia &&
             window.matchMedia("(prefers-color-scheme: dark)").matches);
        document.documentElement.classList.toggle("pf-theme-dark", dark);
    }

    /* ------------------------------------------------------------ start */

    function init() {
        applyTheme();
        window.addEventListener("storage", applyTheme);
        if (window.matchMedia)
            window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);

        $("status-filter").addEventListener("change", function () {
            state.statusFilter = this.value;
            render();
        });
        $("text-filter").addEventListener("input", function () {
            state.textFilter = this.value;
            render();
        });
        $("create-button").addEventListener("click", openCreateDialog);
        $("shared-secret-button").addEventListener("click", openSharedSecretDialog);
        $("retry-button").addEventListener("click", refresh);
        $("page-alert-close").addEventListener("click", hideAlert);
        $("empty-state-action").addEventListener("click", function () {
            if (this.dataset.role === "clear") {
                state.statusFilter = "all";
                state.textFilter = "";
                $("status-filter").value = "all";
                $("text-filter").value = "";
                render();
            } else {
                openCreateDialog();
            }
        });
        /* Back on the page: what others changed meanwhile. */
        document.addEventListener("visibilitychange", function () {
            if (!document.hidden && state.loaded)
                refresh();
        });
        document.addEventListener("click", function (event) {
            if (openMenu && !openMenu.menu.contains(event.target))
                closeMenu(false);
        });

        cockpit.user().then(function (user) {
            state.user = user.name;
        }).finally(refresh);
    }

    /* What the page holds, for whoever checks it: the keys and filters,
     * never a token or a secret. */
    window.apikeysPage = { state: state, refresh: refresh };

    if (document.readyState === "loading")
        document.addEventListener("DOMContentLoaded", init);
    else
        init();
})();
