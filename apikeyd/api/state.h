/* SPDX-License-Identifier: MIT */
/*
 * What state.c, the owner of struct api, offers the files that handle
 * calls: the batches it writes (failed verifies and refused calls, the
 * lockout counts) and the signing state.  api.h has the daemon's side
 * (init, flush, finish, done).
 */
#pragma once

#include "api.h"

/* Hand the queued failed verifies, or the lockout counts, to the writer. */
void api_flush_audit_queue(struct api *a);
void api_save_lockout(struct api *a);
/* The next free entry of the audit queue, or NULL (counted) when it is full. */
struct queued_verify *api_audit_queue_add(struct api *a);

/* The signing state keyed anew from the shared secret. */
int api_sign_state_reset(struct api *a);
