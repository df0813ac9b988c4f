/* SPDX-License-Identifier: MIT */
/*
 * pam_apikey's options: the module's arguments and, with conf=, a file of
 * them that only root may have written.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <security/pam_modules.h>

#include "timeutil.h"
#include "token.h"

#define DEFAULT_SOCKET         "/run/apikeyd/io.apikeyd.Keys"
#define DEFAULT_TIMEOUT_MS     3000
#define DEFAULT_PROMPT         "API key: "
#define DEFAULT_EXPIRY_WARNING (7 * USEC_PER_DAY)
#define OPTIONS_FILE_MAX       (64 * 1024)

struct options {
        char socket[108];
        unsigned timeout_ms;
        char service[128];
        char prompt[128];
        char prefix[TOKEN_PREFIX_MAX + 1];
        bool use_first_pass, try_first_pass, debug, quiet, ignore_authinfo_unavail, nodelay;
        uid_t minimum_uid;
        uid_t daemon_uid; /* besides 0, the uid the daemon may run as */
        bool daemon_uid_set;
        uint64_t expiry_warning; /* µs; 0 = no warning */
};

/*
 * The options of this call: the defaults, then each argument in order
 * (conf= reads its file where it stands).  PAM_SUCCESS, or PAM_SERVICE_ERR
 * with the reason logged.
 */
int parse_options(pam_handle_t *pamh, int argc, const char **argv, struct options *o);
