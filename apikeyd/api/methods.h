/* SPDX-License-Identifier: MIT */
/*
 * The tables each method family exports (keys.c, verify.c, admin.c) and
 * dispatch.c reads: a method's name and its handler.
 *
 * A handler returns 0 once it has replied (or deferred its reply to a
 * change, change.h), or a negative errno when it has not replied; dispatch
 * answers that with one InternalError.
 */
#pragma once

#include "request.h"

struct method {
        const char *name;
        int (*fn)(struct request *q);
        bool needs_principal; /* resolve the caller before calling fn, even without `auth` */
        bool more;            /* the call may ask for `more` */
};

/* Each ends with an entry whose name is NULL. */
extern const struct method keys_methods[];    /* Create, List, Get, Update, ..., Delete */
extern const struct method verify_methods[];  /* Verify */
extern const struct method admin_methods[];   /* shared secret, audit, status, lockouts */
extern const struct method service_methods[]; /* org.varlink.service */
extern const struct method session_methods[]; /* OpenSession, CloseSession, ListSessions */
extern const struct method bulk_methods[];    /* ChangeMatching, CreateMany */
extern const struct method backup_methods[];  /* Backup */
extern const struct method fleet_methods[];   /* FleetPush */
extern const struct method rotate_methods[];  /* Rotate */
extern const struct method usage_methods[];   /* GetUsage */
