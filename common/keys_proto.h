/* SPDX-License-Identifier: MIT */
/*
 * The protocol's names in C, once for the daemon, apikeyctl and the PAM
 * module: the interface, its methods, the errors the daemon sends (its own
 * and org.varlink.service's), and Verify's codes as an enum, so that a
 * switch over them gets the compiler's help (-Wswitch) when a code is
 * added.  The interface file io.apikeyd.Keys.varlink is the reference;
 * test_interface checks this header against it, name for name.
 */
#pragma once

#include <errno.h>
#include <stddef.h>

#define KEYS_INTERFACE            "io.apikeyd.Keys"
#define VARLINK_SERVICE_INTERFACE "org.varlink.service"

/* Methods of io.apikeyd.Keys. */
#define KEYS_METHOD_CREATE               "io.apikeyd.Keys.Create"
#define KEYS_METHOD_VERIFY               "io.apikeyd.Keys.Verify"
#define KEYS_METHOD_LIST                 "io.apikeyd.Keys.List"
#define KEYS_METHOD_GET                  "io.apikeyd.Keys.Get"
#define KEYS_METHOD_UPDATE               "io.apikeyd.Keys.Update"
#define KEYS_METHOD_DISABLE              "io.apikeyd.Keys.Disable"
#define KEYS_METHOD_ENABLE               "io.apikeyd.Keys.Enable"
#define KEYS_METHOD_REVOKE               "io.apikeyd.Keys.Revoke"
#define KEYS_METHOD_DELETE               "io.apikeyd.Keys.Delete"
#define KEYS_METHOD_ROTATE               "io.apikeyd.Keys.Rotate"
#define KEYS_METHOD_GET_SHARED_SECRET    "io.apikeyd.Keys.GetSharedSecret"
#define KEYS_METHOD_ROTATE_SHARED_SECRET "io.apikeyd.Keys.RotateSharedSecret"
#define KEYS_METHOD_LIST_AUDIT           "io.apikeyd.Keys.ListAudit"
#define KEYS_METHOD_GET_STATUS           "io.apikeyd.Keys.GetStatus"
#define KEYS_METHOD_LIST_LOCKOUTS        "io.apikeyd.Keys.ListLockouts"
#define KEYS_METHOD_RESET_LOCKOUT        "io.apikeyd.Keys.ResetLockout"
#define KEYS_METHOD_OPEN_SESSION         "io.apikeyd.Keys.OpenSession"
#define KEYS_METHOD_CLOSE_SESSION        "io.apikeyd.Keys.CloseSession"
#define KEYS_METHOD_LIST_SESSIONS        "io.apikeyd.Keys.ListSessions"
#define KEYS_METHOD_CHANGE_MATCHING      "io.apikeyd.Keys.ChangeMatching"
#define KEYS_METHOD_CREATE_MANY          "io.apikeyd.Keys.CreateMany"
#define KEYS_METHOD_BACKUP               "io.apikeyd.Keys.Backup"
#define KEYS_METHOD_FLEET_PUSH           "io.apikeyd.Keys.FleetPush"
#define KEYS_METHOD_GET_USAGE            "io.apikeyd.Keys.GetUsage"

/* Methods of org.varlink.service that the daemon answers. */
#define VARLINK_METHOD_GET_INFO                  "org.varlink.service.GetInfo"
#define VARLINK_METHOD_GET_INTERFACE_DESCRIPTION "org.varlink.service.GetInterfaceDescription"

/* Errors of io.apikeyd.Keys. */
#define KEYS_ERROR_NO_SUCH_KEY          "io.apikeyd.Keys.NoSuchKey"
#define KEYS_ERROR_NAME_TAKEN           "io.apikeyd.Keys.NameTaken"
#define KEYS_ERROR_PERMISSION_DENIED    "io.apikeyd.Keys.PermissionDenied"
#define KEYS_ERROR_KEY_REVOKED          "io.apikeyd.Keys.KeyRevoked"
#define KEYS_ERROR_POLICY_VIOLATION     "io.apikeyd.Keys.PolicyViolation"
#define KEYS_ERROR_MESSAGE_TOO_LARGE    "io.apikeyd.Keys.MessageTooLarge"
#define KEYS_ERROR_TOO_MANY_CONNECTIONS "io.apikeyd.Keys.TooManyConnections"
#define KEYS_ERROR_INTERNAL_ERROR       "io.apikeyd.Keys.InternalError"
#define KEYS_ERROR_MANAGED_CENTRALLY    "io.apikeyd.Keys.ManagedCentrally"
#define KEYS_ERROR_FLEET_PUSH_FAILED    "io.apikeyd.Keys.FleetPushFailed"

/* Errors of org.varlink.service that the daemon sends. */
#define VARLINK_ERROR_INTERFACE_NOT_FOUND "org.varlink.service.InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_FOUND    "org.varlink.service.MethodNotFound"
#define VARLINK_ERROR_INVALID_PARAMETER   "org.varlink.service.InvalidParameter"

/*
 * Verify's answers (VerifyCode in the interface file, in its order).
 * _VERIFY_CODE_INVALID stands for a text that is none of them: a code of a
 * newer daemon, or none at all.  Whoever decides on a code treats it as a
 * refusal, never as success.
 */
enum verify_code {
        VERIFY_CODE_VALID,
        VERIFY_CODE_BAD_FORMAT,
        VERIFY_CODE_NOT_FOUND,
        VERIFY_CODE_DISABLED,
        VERIFY_CODE_REVOKED,
        VERIFY_CODE_EXPIRED,
        VERIFY_CODE_WRONG_USER,
        VERIFY_CODE_OUT_OF_SCOPE,
        VERIFY_CODE_INSUFFICIENT_PERMISSIONS,
        VERIFY_CODE_RATE_LIMITED,
        VERIFY_CODE_NOT_FOR_LOGIN,
        VERIFY_CODE_USAGE_EXCEEDED,
        VERIFY_CODE_NOT_YET_VALID,
        VERIFY_CODE_SOURCE_DENIED,
        VERIFY_CODE_UNAVAILABLE,
        _VERIFY_CODE_MAX,
        _VERIFY_CODE_INVALID = -EINVAL,
};

/* The code's text ("VALID"), or NULL for a value that is not a code. */
const char *verify_code_to_string(enum verify_code code);

/* The same, with its length in `*ret_len` (0 and NULL for no code): for
 * writers that copy it without measuring it again. */
const char *verify_code_to_string_len(enum verify_code code, size_t *ret_len);

/* The code named by `s` (exactly, case and all), or _VERIFY_CODE_INVALID
 * (-EINVAL) for any other text and for NULL. */
enum verify_code verify_code_from_string(const char *s);
