/* SPDX-License-Identifier: MIT */
/*
 * Hygiene the admin does not have to remember (hygiene.c): keys nobody has
 * used for disable_unused_after (apikeyd.conf) are disabled by the daemon,
 * on a timer of its own, never on the Verify path.  For the daemon's main,
 * which starts it, and state.c, which ends it.
 */
#pragma once

#include "api.h"

/*
 * Once the event loop and the writer are there: look for unused keys now
 * and then every tenth of disable_unused_after (at least every second, at
 * most every hour).  Does nothing when the setting is off, or in fleet
 * mode (the fleet's records are written through etcd).  0 or a negative
 * errno.
 */
int hygiene_start(struct api *a) _warn_unused_;
/* At shutdown: stop looking (a batch handed to the writer still finishes). */
void hygiene_free(struct api *a);
