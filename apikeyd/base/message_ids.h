/* SPDX-License-Identifier: MIT */
/*
 * The journal's MESSAGE_ID= of the daemon's events that an administrator
 * searches for (`journalctl MESSAGE_ID=...`, or `journalctl -x` for the
 * explanation): each a whole journal field, for log_event() and
 * log_fields().  Fixed for good once released: scripts and alerts match
 * them.  systemd/apikeyd.catalog has an entry for every id here, and a
 * test checks that it does.
 */
#pragma once

/* The daemon answers on its socket. */
#define MESSAGE_ID_STARTED "MESSAGE_ID=cef0f2585872442481eb9d22cfd5c7b0"
/* SIGTERM or SIGINT: the daemon finishes what it accepted and stops. */
#define MESSAGE_ID_STOPPING "MESSAGE_ID=8039af54cf0d456382b447e915919955"
/* A key was created. */
#define MESSAGE_ID_KEY_CREATED "MESSAGE_ID=c49cc7b5f85e4e938eb44754c1deb356"
/* A key was updated, disabled or enabled. */
#define MESSAGE_ID_KEY_CHANGED "MESSAGE_ID=f3ece18130434b7a92dc60242f70638d"
/* A key was revoked (with the keys created through it). */
#define MESSAGE_ID_KEY_REVOKED "MESSAGE_ID=4f6b1a71df8e4810b90fa573919fba52"
/* A key was deleted. */
#define MESSAGE_ID_KEY_DELETED "MESSAGE_ID=764c51cf82f44e59a7b76192d0121b13"
/* The shared secret that signs Verify answers was replaced. */
#define MESSAGE_ID_SHARED_SECRET_ROTATED "MESSAGE_ID=3fa808013e274ac099111c4ee8ea82ed"
/* An admin cleared lockout counts. */
#define MESSAGE_ID_LOCKOUT_RESET "MESSAGE_ID=31d9991b04e04abdb1f0b92834202af8"
/* A login session was ended: its key was revoked, disabled, deleted or expired. */
#define MESSAGE_ID_SESSION_ENDED "MESSAGE_ID=6e08ddc8c0034488ad044105d5f116ed"
/* A token was refused: by Verify (a login, sudo, a service), or as `auth`. */
#define MESSAGE_ID_AUTH_REFUSED "MESSAGE_ID=8eff54ce03c041028ba9dba9ad02070f"
/* A management call was refused (PermissionDenied, PolicyViolation). */
#define MESSAGE_ID_CALL_REFUSED "MESSAGE_ID=a816e3c336e144cb80087cc66a69abfa"
/* A key, user, host or remote user is locked out after failed verifies. */
#define MESSAGE_ID_LOCKED_OUT "MESSAGE_ID=ef6c98ff561e4f558b76f789ed4f835d"
/* The keystore failed to read or write: a call answered InternalError or
 * a verify answered UNAVAILABLE. */
#define MESSAGE_ID_STORAGE_ERROR "MESSAGE_ID=b0ef63328c7d4318bbaf6cd9a107c741"
/* A key was used (VALID) from a source it had not been used from. */
#define MESSAGE_ID_KEY_NEW_SOURCE "MESSAGE_ID=97f319e3dc4547ddbac157883f3853c7"
/* A key comes within one of the expiry_warnings of its expiry. */
#define MESSAGE_ID_KEY_EXPIRING "MESSAGE_ID=368b457e51ba491d9b0da9729c039cf7"
