/* SPDX-License-Identifier: MIT */
/*
 * The entries the daemon's server calls: every method of
 * io.apikeyd.Keys and org.varlink.service, found by name in the tables
 * the method families export (methods.h; dispatch.c), and the Verify
 * fast path (verify.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "api.h"

/*
 * The server's fast path (server_fast_fn): answers plain Verify calls
 * without the general decoder; `userdata` is the struct api.
 */
bool api_fast_path(struct connection *c, const char *msg, size_t len, void *userdata);

/* The server's dispatch function; `userdata` is the struct api. */
void api_dispatch(struct connection *c, struct varlink_call *call, void *userdata);

/* The i-th method the daemon answers, or NULL past the last (for tests). */
const char *api_method_name(size_t i);
