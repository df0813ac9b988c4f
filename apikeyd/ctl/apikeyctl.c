/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl: every method of io.apikeyd.Keys from a shell, for a person at
 * a terminal (tables, local and relative times, confirmation before what
 * cannot be undone) and for a script (--json, exit codes that tell a
 * refusal from an unreachable daemon).
 *
 * This file holds main, the options, the command table with its help, and
 * the exit codes.  The commands are in ctl_keys.c and ctl_admin.c; calling
 * the daemon and reading secrets in ctl_call.c; checking arguments in
 * ctl_args.c; printing in ctl_show.c and ctl_table.c.
 *
 * Tokens are secrets: run() refuses one given on the command line, where
 * ps shows it; how they are read and erased is told in ctl_call.c.
 */
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl_call.h"
#include "ctl_commands.h"
#include "macro.h"
#include "varlink.h"

/* The daemon's release, from the file VERSION at the top: the Makefile passes it. */
#ifndef APIKEYD_VERSION
#error "APIKEYD_VERSION is not defined: build with the Makefile, which reads it from VERSION"
#endif
#define DEFAULT_SOCKET "/run/apikeyd/io.apikeyd.Keys"

/* Exit codes: documented in apikeyctl(1), EXIT STATUS. */
enum {
        EXIT_OK = 0,
        EXIT_LOCAL = 1,       /* a failure on this side: a file, memory, not confirmed */
        EXIT_USAGE = 2,       /* the command line is wrong */
        EXIT_REFUSED = 3,     /* the daemon answered with an error */
        EXIT_UNREACHABLE = 4, /* no usable answer from the daemon */
        EXIT_NOT_VALID = 5,   /* verify: the token is not valid */
};

static int exit_code(int r)
{
        switch (r) {
        case 0:
                return EXIT_OK;
        case ERR_USAGE:
                return EXIT_USAGE;
        case ERR_REFUSED:
                return EXIT_REFUSED;
        case ERR_UNREACHABLE:
                return EXIT_UNREACHABLE;
        case ERR_NOT_VALID:
                return EXIT_NOT_VALID;
        default:
                return EXIT_LOCAL;
        }
}

/* ----------------------------------------------------------- command table */

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON,
        OPT_AUTH_FILE,
        OPT_VERSION,
        OPT_OWNER,
        OPT_DESCRIPTION,
        OPT_ROLE,
        OPT_PERMISSIONS,
        OPT_SCOPE,
        OPT_EXPIRES,
        OPT_STATUS,
        OPT_EXPIRING,
        OPT_NAME,
        OPT_SERVICE,
        OPT_USER,
        OPT_RHOST,
        OPT_SINCE,
        OPT_KEY,
        OPT_SORT,
        OPT_DRY_RUN,
        OPT_FROM,
        OPT_SOURCES,
        OPT_NOT_BEFORE,
        OPT_MAX_USES,
        OPT_RATE_LIMIT,
        OPT_GRACE,
        OPT_RETIRE_ON_FIRST_USE,
};

#define N_GLOBAL_OPTIONS 5
static const struct option all_options[] = {
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"json", optional_argument, NULL, OPT_JSON},
    {"auth-file", required_argument, NULL, OPT_AUTH_FILE},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    /* per command from here on */
    {"owner", required_argument, NULL, OPT_OWNER},
    {"description", required_argument, NULL, OPT_DESCRIPTION},
    {"role", required_argument, NULL, OPT_ROLE},
    {"permissions", required_argument, NULL, OPT_PERMISSIONS},
    {"scope", required_argument, NULL, OPT_SCOPE},
    {"expires", required_argument, NULL, OPT_EXPIRES},
    {"status", required_argument, NULL, OPT_STATUS},
    {"expiring", required_argument, NULL, OPT_EXPIRING},
    {"name", required_argument, NULL, OPT_NAME},
    {"service", required_argument, NULL, OPT_SERVICE},
    {"user", required_argument, NULL, OPT_USER},
    {"rhost", required_argument, NULL, OPT_RHOST},
    {"since", required_argument, NULL, OPT_SINCE},
    {"key", required_argument, NULL, OPT_KEY},
    {"sort", required_argument, NULL, OPT_SORT},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"from", required_argument, NULL, OPT_FROM},
    {"sources", required_argument, NULL, OPT_SOURCES},
    {"not-before", required_argument, NULL, OPT_NOT_BEFORE},
    {"yes", no_argument, NULL, 'y'},
    {"quiet", no_argument, NULL, 'q'},
    {"max-uses", required_argument, NULL, OPT_MAX_USES},
    {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
    {"grace", required_argument, NULL, OPT_GRACE},
    {"retire-on-first-use", no_argument, NULL, OPT_RETIRE_ON_FIRST_USE},
};

struct command {
        const char *name;
        const char *brief; /* for the list of commands */
        const char *synopsis;
        const char *summary;
        const char *options; /* names in all_options, space-separated */
        const char *help;    /* the options' help text */
        int min_pos, max_pos;
        int (*run)(struct ctl *c, struct args *a);
};

static const struct command commands[] = {
    {"create", "create a key, print its token once", "NAME [OPTIONS] | --from FILE",
     "Create a key and print its token. The token is shown only this once.\n"
     "With --from, create every key FILE describes, in one transaction.",
     "owner description role permissions scope sources not-before expires max-uses rate-limit "
     "from",
     "  --owner USER            owner of the key (default: you; only admins may name\n"
     "                          another user)\n"
     "  --description TEXT      what the key is for\n"
     "  --role ROLE             admin, readonly or custom (default: readonly, or\n"
     "                          custom when --permissions is given)\n"
     "  --permissions LIST      comma-separated: create,read,write,delete,invite\n"
     "  --scope LIST            services the key may be used for, comma-separated\n"
     "                          (sshd,sudo,...); default: any\n"
     "  --sources LIST          where the key may be used from, comma-separated:\n"
     "                          addresses, CIDR blocks, host names; default: anywhere\n"
     "  --not-before WHEN       valid only from then on: a duration from now, a date\n"
     "                          (from its first instant, UTC), a time with a zone\n"
     "  --expires WHEN          a duration (30d, 12h, 2w), a date (2027-01-31, valid\n"
     "                          through that day, UTC), a time with a zone, or never;\n"
     "                          default: the policy's (never for admins)\n"
     "  --max-uses N            VALID verifies the key may have in all (default: no\n"
     "                          limit)\n"
     "  --rate-limit COUNT/TIME VALID verifies a window may have (100/1m; default:\n"
     "                          no limit)\n"
     "  --from FILE             instead of NAME and the options: JSON lines, one\n"
     "                          object of Create's parameters per key (- for\n"
     "                          standard input); all are created or none, and the\n"
     "                          tokens are printed as JSON lines\n",
     0, 1, cmd_create},
    {"list", "list keys", "[OPTIONS]",
     "List keys, newest first: all of them for admins, your own otherwise.",
     "status owner expiring name sort quiet",
     "  --status STATUS         only keys that are enabled, disabled, revoked or\n"
     "                          expired (in any case)\n"
     "  --owner USER            only keys of this owner\n"
     "  --expiring DURATION     only keys expiring within this time (7d)\n"
     "  --name PREFIX           only keys whose name starts with PREFIX\n"
     "  --sort ORDER            created (newest first, the default), name, owner,\n"
     "                          expires (soonest first) or last-used (latest first)\n"
     "  -q, --quiet             print only the key ids, one per line\n",
     0, 0, cmd_list},
    {"show", "show one key", "KEY", "Show one key; KEY is its id or its name.", "", "", 1, 1,
     cmd_show},
    {"update", "change fields of a key", "KEY [OPTIONS]",
     "Change fields of a key (KEY: its id or its name); those not given stay as\n"
     "they are.",
     "name description scope sources not-before role permissions expires max-uses rate-limit",
     "  --name NAME             a new name\n"
     "  --description TEXT      a new description (\"\" removes it)\n"
     "  --scope LIST            services, comma-separated (\"\" means any)\n"
     "  --sources LIST          addresses, CIDR blocks, host names (\"\" means anywhere)\n"
     "  --not-before WHEN       a duration, a date, a time with a zone, or now\n"
     "  --role ROLE             admin, readonly or custom\n"
     "  --permissions LIST      comma-separated: create,read,write,delete,invite\n"
     "  --expires WHEN          a duration, a date, a time with a zone, or never\n"
     "  --max-uses N            VALID verifies in all, the uses spent counted (0: no\n"
     "                          limit)\n"
     "  --rate-limit COUNT/TIME VALID verifies a window may have (none: no limit)\n",
     1, 1, cmd_update},
    {"rotate", "replace a key with a new one", "KEY [OPTIONS]",
     "Make a successor of a key (KEY: its id or its name) with the same name,\n"
     "owner, role, permissions, scope, expiry and limits, and print its token once.\n"
     "The old key keeps working until its grace ends (it is renamed\n"
     "'NAME (old ID)').",
     "grace retire-on-first-use",
     "  --grace DURATION        how long the old key keeps working (7d, 12h; 0: not\n"
     "                          at all; default: the daemon's rotation_grace, 24h)\n"
     "  --retire-on-first-use   the old key also stops at the new key's first valid\n"
     "                          verify\n",
     1, 1, cmd_rotate},
    {"disable", "stop a key until it is enabled again", "KEY | --owner USER [OPTIONS]",
     "Stop a key (KEY: its id or its name) from working until it is enabled again;\n"
     "or every matching key of an owner.",
     "yes owner name status dry-run",
     "  -y, --yes               do not ask for confirmation on a terminal\n"
     "  --owner USER            instead of KEY: every key of USER (in one\n"
     "                          transaction, asking first on a terminal)\n"
     "  --name PREFIX           with --owner: only keys whose name begins so\n"
     "  --status STATUS         with --owner: only keys that are enabled,\n"
     "                          disabled, revoked or expired\n"
     "  --dry-run               with --owner: list the keys, change nothing\n",
     0, 1, cmd_disable},
    {"enable", "let a disabled key work again", "KEY | --owner USER [OPTIONS]",
     "Let a disabled key work again (a revoked key stays revoked); KEY is its id\n"
     "or its name; or every matching key of an owner.",
     "yes owner name status dry-run",
     "  -y, --yes               do not ask for confirmation on a terminal\n"
     "  --owner USER            instead of KEY: every key of USER (in one\n"
     "                          transaction, asking first on a terminal)\n"
     "  --name PREFIX           with --owner: only keys whose name begins so\n"
     "  --status STATUS         with --owner: only keys that are enabled,\n"
     "                          disabled, revoked or expired\n"
     "  --dry-run               with --owner: list the keys, change nothing\n",
     0, 1, cmd_enable},
    {"revoke", "stop a key for good", "KEY [--yes] | --owner USER [OPTIONS]",
     "Stop a key for good (KEY: its id or its name); it stays listed as revoked.\n"
     "With --owner, every matching key of that owner.",
     "yes owner name status dry-run",
     "  -y, --yes               do not ask for confirmation on a terminal\n"
     "  --owner USER            instead of KEY: every key of USER (in one\n"
     "                          transaction, asking first on a terminal)\n"
     "  --name PREFIX           with --owner: only keys whose name begins so\n"
     "  --status STATUS         with --owner: only keys that are enabled,\n"
     "                          disabled, revoked or expired\n"
     "  --dry-run               with --owner: list the keys, change nothing\n",
     0, 1, cmd_revoke},
    {"delete", "remove a key", "KEY [--yes] | --owner USER [OPTIONS]",
     "Remove a key (KEY: its id or its name); this cannot be undone. With\n"
     "--owner, every matching key of that owner.",
     "yes owner name status dry-run",
     "  -y, --yes               do not ask for confirmation on a terminal\n"
     "  --owner USER            instead of KEY: every key of USER (in one\n"
     "                          transaction, asking first on a terminal)\n"
     "  --name PREFIX           with --owner: only keys whose name begins so\n"
     "  --status STATUS         with --owner: only keys that are enabled,\n"
     "                          disabled, revoked or expired\n"
     "  --dry-run               with --owner: list the keys, change nothing\n",
     0, 1, cmd_delete},
    {"sessions", "list the login sessions opened with keys", "[KEY]",
     "List the live login sessions (sshd, sudo) opened with keys you may see, or\n"
     "with one key (KEY: its id or its name): key, user, service, remote host,\n"
     "terminal, since when and the process the daemon ends when the key is\n"
     "revoked, disabled, deleted or expires.",
     "", "", 0, 1, cmd_sessions},
    {"usage", "show where and when a key was used", "KEY",
     "Show a key's latest uses (KEY: its id or its name), newest first: when, the\n"
     "code the daemon answered (VALID or why it refused), the service, the remote\n"
     "host (local: none given) and the terminal. The daemon keeps usage_history\n"
     "uses per key (20 by default).",
     "", "", 1, 1, cmd_usage},
    {"verify", "check a token read from standard input", "[OPTIONS] < TOKEN",
     "Read a token from standard input, print the daemon's code (VALID, NOT_FOUND,\n"
     "DISABLED, ...) and exit 0 only when it is VALID.",
     "service user rhost permissions",
     "  --service NAME          check the key's scope for this service\n"
     "  --user USER             check that the key belongs to this user\n"
     "  --rhost HOST            the remote host, recorded as where the key was used\n"
     "  --permissions LIST      check that the key holds these permissions\n",
     0, 0, cmd_verify},
    {"shared-secret", "print or replace the signing secret", "show|rotate [--yes]",
     "Print the shared secret that signs Verify answers, or replace it (admins only).", "yes",
     "  -y, --yes               rotate without asking on a terminal\n", 1, 1, cmd_shared_secret},
    {"audit", "show the audit log", "[OPTIONS]",
     "Show the audit log in the order it was recorded (admins only).", "since key",
     "  --since WHEN            events at or after a time (2027-01-31T12:00Z), or\n"
     "                          within a duration (1h: the last hour)\n"
     "  --key ID                events of this key only\n",
     0, 0, cmd_audit},
    {"lockout", "show or lift lockouts after failed verifies", "list | reset [KIND NAME [SOURCE]]",
     "List the names failed verifies are counted under: sources (user@host pairs,\n"
     "calling uids) and key ids from a source; or forget the counts of one source\n"
     "with its keys (lockout reset from alice@192.0.2.7, lockout reset uid 1000), of\n"
     "a key from every source or one (lockout reset key 7Hq2LmX9aB3z [uid:1000]),\n"
     "or of all. Admins only.",
     "yes", "  -y, --yes               reset all without asking on a terminal\n", 1, 4,
     cmd_lockout},
    {"backup", "copy the keystore to a file", "FILE",
     "Write a consistent, compacted copy of the keystore to FILE (- for standard\n"
     "output), mode 0600, and print how many keys it holds and the fingerprint of\n"
     "the pepper they were made with (admins only). Restore it with\n"
     "'apikeyd --restore FILE'.",
     "", "", 1, 1, cmd_backup},
    {"status", "show the daemon's state", "",
     "Show the daemon's version, socket, state directory and key counts, the keys\n"
     "expiring within 7 days, and a warning when more than expiry_cliff keys expire\n"
     "on the same day.",
     "", "", 0, 0, cmd_status},
    {"fleet", "move this host's own keys into its fleet", "push",
     "Fleet mode, on a host whose keystore held keys of its own when it joined:\n"
     "move them into etcd (as 'apikeyd --fleet-push' does with the daemon\n"
     "stopped), after which the daemon follows the fleet's keys. Admins only.",
     "", "", 1, 1, cmd_fleet},
    /* run() answers it before any command runs */
    {"help", "show this help, or a command's", "[COMMAND]",
     "Show the commands and the global options, or with COMMAND, its help (the\n"
     "same as '--help' before or after it).",
     "", "", 0, 1, NULL},
};

static const struct command *find_command(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (STREQ(commands[i].name, name))
                        return &commands[i];
        return NULL;
}

#define HELP_USAGE_WIDTH 34

static void help_global(void)
{
        printf("Usage: %s [OPTIONS] COMMAND ...\n"
               "\n"
               "Manage the API keys that apikeyd keeps.\n"
               "\n"
               "Commands:\n",
               program);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                char usage[64];
                snprintf(usage, sizeof(usage), "%s%s%s", commands[i].name,
                         commands[i].synopsis[0] ? " " : "", commands[i].synopsis);
                /* Within 80 columns: a long synopsis gets a line of its own. */
                if (strlen(usage) > HELP_USAGE_WIDTH ||
                    2 + HELP_USAGE_WIDTH + 1 + strlen(commands[i].brief) > 80)
                        printf("  %s\n  %-*s %s\n", usage, HELP_USAGE_WIDTH, "", commands[i].brief);
                else
                        printf("  %-*s %s\n", HELP_USAGE_WIDTH, usage, commands[i].brief);
        }
        printf("\n"
               "Options:\n"
               "  --socket PATH           the daemon's socket (default $APIKEYD_SOCKET, else\n"
               "                          " DEFAULT_SOCKET ")\n"
               "  --json[=FORMAT]         print JSON (times in ISO 8601 UTC): pretty (the\n"
               "                          default, indented) or short (one line)\n"
               "  --auth-file FILE        act with the API key in FILE (mode 0600)\n"
               "  -h, --help              show this help, or a command's help after it\n"
               "  --version               show the version\n"
               "\n"
               "A KEY is named by its id, or by its name when that names one key you may see.\n"
               "\n"
               "Exit status: 0 success, 1 local failure, 2 usage error (or a name that\n"
               "several keys have), 3 refused by the daemon (or no key of that name),\n"
               "4 daemon unreachable, 5 verify: token not valid.\n"
               "See '%s COMMAND --help' and apikeyctl(1).\n",
               program);
}

static void help_command(const struct command *cmd)
{
        printf("Usage: %s [GLOBAL OPTIONS] %s%s%s\n\n%s\n", program, cmd->name,
               cmd->synopsis[0] ? " " : "", cmd->synopsis, cmd->summary);
        if (cmd->help[0])
                printf("\nOptions:\n%s", cmd->help);
        printf("\nGlobal options: --socket PATH, --json[=FORMAT], --auth-file FILE; see\n"
               "'%s --help'.\n",
               program);
}

/* Edit distance, for "did you mean" on a mistyped command. */
static size_t distance(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b), prev[32], cur[32];

        if (la >= ELEMENTSOF(prev) || lb >= ELEMENTSOF(prev))
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                prev[j] = j;
        for (size_t i = 1; i <= la; i++) {
                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
                        size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
                        cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
                }
                memcpy(prev, cur, sizeof(prev));
        }
        return prev[lb];
}

static int unknown_command(const char *name)
{
        const char *best = NULL;
        size_t best_d = 3;

        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                size_t d = distance(name, commands[i].name);
                if (d < best_d) {
                        best_d = d;
                        best = commands[i].name;
                }
        }
        if (strchr(name, '_') || strlen(name) > 40)
                err("unknown command");
        else if (best)
                err("unknown command '%s'; did you mean '%s'?", name, best);
        else
                err("unknown command '%s'", name);
        fprintf(stderr, "Try '%s --help' for the list of commands.\n", program);
        return ERR_USAGE;
}

static bool option_allowed(const struct command *cmd, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = cmd->options; (p = strstr(p, name)); p += n)
                if ((p == cmd->options || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
                        return true;
        return false;
}

enum parse_result { PARSE_RUN, PARSE_HELP, PARSE_VERSION };

/*
 * Parse options for `cmd` (NULL: the global options before the command,
 * stopping at the first argument).  Positional arguments are left in
 * argv[optind..].
 */
static int parse_options(int argc, char **argv, const struct command *cmd, struct ctl *c,
                         struct args *a, enum parse_result *ret)
{
        struct option longopts[ELEMENTSOF(all_options) + 1];
        char shortopts[8], *s = shortopts;
        size_t n = 0;
        int opt;

        *s++ = cmd ? ':' : '+';
        if (!cmd)
                *s++ = ':';
        *s++ = 'h';
        for (size_t i = 0; i < ELEMENTSOF(all_options); i++)
                if (i < N_GLOBAL_OPTIONS || (cmd && option_allowed(cmd, all_options[i].name))) {
                        longopts[n++] = all_options[i];
                        if (all_options[i].val == 'y' || all_options[i].val == 'q')
                                *s++ = (char)all_options[i].val;
                }
        longopts[n] = (struct option){NULL, 0, NULL, 0};
        *s = '\0';

        *ret = PARSE_RUN;
        optind = 0;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) >= 0) {
                switch (opt) {
                case OPT_SOCKET:
                        c->socket = optarg;
                        break;
                case OPT_JSON:
                        /* As systemd's tools take it: --json alone is pretty. */
                        if (!optarg || STREQ(optarg, "pretty") || STREQ(optarg, "short")) {
                                c->json = true;
                                print_json_set_short(optarg && STREQ(optarg, "short"));
                        } else if (STREQ(optarg, "off")) {
                                c->json = false;
                                print_json_set_short(false);
                        } else
                                return usage_error(a,
                                                   "--json must be pretty, short or off, not "
                                                   "'%s'",
                                                   optarg);
                        break;
                case OPT_AUTH_FILE:
                        c->auth_file = optarg;
                        break;
                case 'h':
                        *ret = PARSE_HELP;
                        break;
                case OPT_VERSION:
                        *ret = PARSE_VERSION;
                        break;
                case OPT_OWNER:
                        a->owner = optarg;
                        break;
                case OPT_DESCRIPTION:
                        a->description = optarg;
                        break;
                case OPT_ROLE:
                        a->role = optarg;
                        break;
                case OPT_PERMISSIONS:
                        a->permissions = optarg;
                        break;
                case OPT_SCOPE:
                        a->scope = optarg;
                        break;
                case OPT_EXPIRES:
                        a->expires = optarg;
                        break;
                case OPT_SOURCES:
                        a->sources = optarg;
                        break;
                case OPT_NOT_BEFORE:
                        a->not_before = optarg;
                        break;
                case OPT_STATUS:
                        a->status = optarg;
                        break;
                case OPT_EXPIRING:
                        a->expiring = optarg;
                        break;
                case OPT_NAME:
                        a->name = optarg;
                        break;
                case OPT_SERVICE:
                        a->service = optarg;
                        break;
                case OPT_USER:
                        a->user = optarg;
                        break;
                case OPT_RHOST:
                        a->rhost = optarg;
                        break;
                case OPT_SINCE:
                        a->since = optarg;
                        break;
                case OPT_KEY:
                        a->key = optarg;
                        break;
                case OPT_SORT:
                        a->sort = optarg;
                        break;
                case OPT_DRY_RUN:
                        a->dry_run = true;
                        break;
                case OPT_FROM:
                        a->from = optarg;
                        break;
                case OPT_MAX_USES:
                        a->max_uses = optarg;
                        break;
                case OPT_RATE_LIMIT:
                        a->rate_limit = optarg;
                        break;
                case OPT_GRACE:
                        a->grace = optarg;
                        break;
                case OPT_RETIRE_ON_FIRST_USE:
                        a->retire_on_first_use = true;
                        break;
                case 'y':
                        a->yes = true;
                        break;
                case 'q':
                        a->quiet = true;
                        break;
                case ':':
                        return usage_error(a, "option '%s' needs a value", argv[optind - 1]);
                default:
                        if (optopt > ' ' && optopt < 0x7f)
                                return usage_error(a, "unknown option '-%c'", optopt);
                        return usage_error(a, "unknown option '%s'", argv[optind - 1]);
                }
        }
        return 0;
}

static int run(int argc, char **argv, struct ctl *c)
{
        struct args a = {.command = NULL};
        const struct command *cmd;
        enum parse_result pr;
        int r, first;

        for (int i = 1; i < argc; i++)
                if (contains_token(argv[i])) {
                        err("an API key was given on the command line, where other users can "
                            "read it (ps, /proc); pass it on standard input (verify) or in a "
                            "file (--auth-file), and consider this one exposed");
                        return ERR_USAGE;
                }

        r = parse_options(argc, argv, NULL, c, &a, &pr);
        if (r < 0)
                return r;
        if (pr == PARSE_VERSION) {
                printf("apikeyctl %s\n", APIKEYD_VERSION);
                return 0;
        }
        first = optind;
        if (first >= argc) {
                if (pr == PARSE_HELP) {
                        help_global();
                        return 0;
                }
                err("no command given");
                fprintf(stderr, "Try '%s --help' for the list of commands.\n", program);
                return ERR_USAGE;
        }
        if (STREQ(argv[first], "help")) {
                if (first + 1 >= argc && pr != PARSE_HELP) {
                        help_global();
                        return 0;
                }
                /* help --help, --help help: the help of help, as for any command. */
                if (first + 1 >= argc || STREQ(argv[first + 1], "--help") ||
                    STREQ(argv[first + 1], "-h"))
                        cmd = find_command("help");
                else
                        cmd = find_command(argv[first + 1]);
                if (!cmd)
                        return unknown_command(argv[first + 1]);
                help_command(cmd);
                return 0;
        }
        cmd = find_command(argv[first]);
        if (!cmd)
                return unknown_command(argv[first]);
        if (pr == PARSE_HELP) {
                help_command(cmd);
                return 0;
        }
        a.command = cmd->name;

        r = parse_options(argc - first, argv + first, cmd, c, &a, &pr);
        if (r < 0)
                return r;
        if (pr == PARSE_HELP) {
                help_command(cmd);
                return 0;
        }
        if (pr == PARSE_VERSION) {
                printf("apikeyctl %s\n", APIKEYD_VERSION);
                return 0;
        }
        a.pos = argv + first + optind;
        a.n_pos = argc - first - optind;
        if (!c->socket)
                c->socket = getenv("APIKEYD_SOCKET");
        if (!c->socket || !*c->socket)
                c->socket = DEFAULT_SOCKET;
        if (STREQ(cmd->name, "verify") && a.n_pos > 0)
                return cmd->run(c, &a); /* it says why a token is never an argument */
        if (a.n_pos < cmd->min_pos)
                return usage_error(&a, "missing argument: %s %s", cmd->name, cmd->synopsis);
        if (a.n_pos > cmd->max_pos)
                return usage_error(&a, "unexpected argument '%s'", a.pos[cmd->max_pos]);
        if (a.quiet && c->json)
                return usage_error(&a, "--quiet and --json exclude each other");
        if (c->auth_file) {
                r = read_auth_file(c);
                if (r < 0)
                        return r;
        }
        r = cmd->run(c, &a);
        if (r == -ENOMEM)
                err("out of memory");
        if (fflush(stdout) != 0 && r >= 0) {
                err("cannot write to standard output: %s", strerror(errno));
                r = -EIO;
        }
        return r;
}

static void ctl_done(struct ctl *c)
{
        erase_and_free(c->auth);
        c->auth = NULL;
        json_decref(c->last_error);
        c->last_error = NULL;
        closep(&c->fd);
}

int main(int argc, char **argv)
{
        _cleanup_(ctl_done) struct ctl c = {.fd = -1};

        setlocale(LC_ALL, "");
        tzset();
        json_set_alloc_funcs(malloc, erasing_free);
        return exit_code(run(argc, argv, &c));
}
