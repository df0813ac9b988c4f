/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl's side of the conversation: the state of one run (struct ctl)
 * and the command line it was given (struct args); calling the daemon and
 * telling the user, in words, why a call failed; and the secrets it reads
 * (the --auth-file key, the token verify takes on standard input), which
 * are erased from every buffer that held them.
 *
 * The commands return 0 or a negative errno; those below mean the user has
 * been told already, and main() maps them to the exit codes of
 * apikeyctl(1).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "macro.h"

#define ERR_USAGE       (-EINVAL)
#define ERR_REFUSED     (-EREMOTEIO)
#define ERR_UNREACHABLE (-EHOSTDOWN)
#define ERR_NOT_VALID   (-EKEYREJECTED)
#define ERR_DECLINED    (-ECANCELED)

#define TOKEN_INPUT_MAX 1024

struct ctl {
        const char *socket;
        const char *auth_file;
        char *auth; /* the token read from auth_file */
        bool json;
        int fd;
        json_t *last_error;   /* the parameters of the last error the daemon answered */
        unsigned timeout_sec; /* of a call; 0: CALL_TIMEOUT_SEC */
};

struct args {
        const char *command;
        const char *owner, *description, *role, *permissions, *scope, *expires;
        const char *not_before, *sources;
        const char *status, *expiring, *name, *service, *user, *rhost, *since, *key, *sort;
        bool yes, quiet;
        bool dry_run;
        const char *from;
        const char *max_uses, *rate_limit, *grace; /* create, update; rotate */
        bool retire_on_first_use;
        char **pos;
        int n_pos;
};

/* The name messages begin with. */
extern const char *const program;

/* "apikeyctl: MESSAGE" on standard error. */
_printf_(1, 2) void err(const char *fmt, ...);
/* A usage error: the message, and where to read more.  Returns ERR_USAGE. */
_printf_(2, 3) int usage_error(const struct args *a, const char *fmt, ...);

/* Write all of `s` to fd 1 without stdio, so no library buffer keeps a copy. */
int write_stdout(const char *s, size_t len);
/* `v` as indented JSON on standard output, through write_stdout(). */
int print_json(const json_t *v);
/* --json=short: print_json() writes one line instead. */
void print_json_set_short(bool on);

/* The string member `name` of `o`, or NULL. */
const char *param_str(const json_t *o, const char *name);

/*
 * Call `method` with `params` (taken over; NULL is out of memory), adding the
 * --auth-file key.  On success `*ret_params` holds the reply's parameters.
 * A transport failure or an error reply is told to the user and returned as
 * ERR_UNREACHABLE or ERR_REFUSED.
 */
int ctl_call(struct ctl *c, const char *method, json_t *params, json_t **ret_params);
/*
 * ctl_call() with `more`: `fn` gets each reply's parameters in turn, and
 * whether more follow; a negative return stops the call and is returned.
 */
int ctl_call_more(struct ctl *c, const char *method, json_t *params,
                  int (*fn)(const json_t *params, bool continues, void *userdata), void *userdata);
/* {"id": id}, for the methods that take only a key id. */
json_t *id_params(const char *id);
/* A reply that lacks what the interface promises: told, ERR_UNREACHABLE. */
int bad_reply(const struct ctl *c, const char *method);

/* Read the key in c->auth_file into c->auth, refusing a file others can read. */
int read_auth_file(struct ctl *c);
/* Whether `s` holds a token, even a truncated one. */
bool contains_token(const char *s);

struct token_input {
        char data[TOKEN_INPUT_MAX + 1];
        size_t len;
};

void token_input_erase(struct token_input *t);
/* One line from stdin, without echo on a terminal; never through stdio. */
int read_token(const struct args *a, struct token_input *in);
