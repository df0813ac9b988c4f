/* SPDX-License-Identifier: MIT */
/*
 * Drive a real PAM stack: pam_start_confdir() with service files from a
 * directory of the test's own, then pam_authenticate() and, with --acct,
 * pam_acct_mgmt().  Each prompt is answered with one line of stdin;
 * messages the modules show are printed as "info: …" / "error: …".
 *
 *   pam-harness [--acct] [--rhost HOST] [--tty TTY] [--session SECONDS] CONFDIR SERVICE USER
 *
 * --session: after a successful auth (and account), pam_open_session(),
 * held SECONDS, then pam_close_session().
 *
 * --fork-auth: as sshd's keyboard-interactive login (auth-pam.c): auth and
 * account in a forked child, of which only the PAM environment comes back;
 * then pam_setcred() and the session in the parent, with the PAM
 * environment printed as "env: NAME=VALUE" once the session is open.
 *
 * Prints "auth=<code name>" (and "acct=<code name>") and exits with the PAM
 * code of the last step run, so a test sees the exact code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_appl.h>

static int converse(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
        struct pam_response *r = calloc((size_t)n, sizeof(*r));

        if (!r)
                return PAM_BUF_ERR;
        for (int i = 0; i < n; i++) {
                char line[4096];

                switch (msg[i]->msg_style) {
                case PAM_PROMPT_ECHO_OFF:
                case PAM_PROMPT_ECHO_ON:
                        printf("prompt: %s\n", msg[i]->msg);
                        if (!fgets(line, sizeof(line), stdin)) {
                                free(r);
                                return PAM_CONV_ERR;
                        }
                        line[strcspn(line, "\n")] = '\0';
                        r[i].resp = strdup(line);
                        memset(line, 0, sizeof(line));
                        break;
                case PAM_TEXT_INFO:
                        printf("info: %s\n", msg[i]->msg);
                        break;
                case PAM_ERROR_MSG:
                        printf("error: %s\n", msg[i]->msg);
                        break;
                default:
                        free(r);
                        return PAM_CONV_ERR;
                }
        }
        *resp = r;
        return PAM_SUCCESS;
}

/* Auth (and account) in a child; its PAM environment put into the parent's handle. */
static int auth_in_child(pam_handle_t *pamh, int acct, int *ret_acct)
{
        int fds[2], r = PAM_SYSTEM_ERR, a = PAM_SYSTEM_ERR;
        char line[8192];
        FILE *f;
        pid_t pid;

        if (pipe(fds) < 0)
                return PAM_SYSTEM_ERR;
        fflush(stdout);
        pid = fork();
        if (pid < 0)
                return PAM_SYSTEM_ERR;
        if (pid == 0) {
                char **env;

                close(fds[0]);
                f = fdopen(fds[1], "w");
                r = pam_authenticate(pamh, 0);
                if (r == PAM_SUCCESS && acct)
                        a = pam_acct_mgmt(pamh, 0);
                env = pam_getenvlist(pamh);
                if (f) {
                        fprintf(f, "%d %d\n", r, a);
                        for (size_t i = 0; env && env[i]; i++)
                                fprintf(f, "%s\n", env[i]);
                        fclose(f);
                }
                for (size_t i = 0; env && env[i]; i++)
                        free(env[i]);
                free(env);
                pam_end(pamh, r | PAM_DATA_SILENT);
                fflush(stdout);
                _exit(0);
        }
        close(fds[1]);
        f = fdopen(fds[0], "r");
        if (f && fgets(line, sizeof(line), f) && sscanf(line, "%d %d", &r, &a) == 2) {
                while (fgets(line, sizeof(line), f)) {
                        line[strcspn(line, "\n")] = '\0';
                        (void)pam_putenv(pamh, line);
                }
        } else
                r = PAM_SYSTEM_ERR;
        if (f)
                fclose(f);
        else
                close(fds[0]);
        (void)waitpid(pid, NULL, 0);
        *ret_acct = a;
        return r;
}

int main(int argc, char **argv)
{
        struct pam_conv conv = {converse, NULL};
        const char *rhost = NULL, *tty = NULL;
        pam_handle_t *pamh = NULL;
        int i = 1, r, acct = 0, session = -1, fork_auth = 0, child_acct = PAM_SYSTEM_ERR;

        for (; i < argc && argv[i][0] == '-'; i++) {
                if (strcmp(argv[i], "--acct") == 0)
                        acct = 1;
                else if (strcmp(argv[i], "--rhost") == 0 && i + 1 < argc)
                        rhost = argv[++i];
                else if (strcmp(argv[i], "--tty") == 0 && i + 1 < argc)
                        tty = argv[++i];
                else if (strcmp(argv[i], "--session") == 0 && i + 1 < argc)
                        session = atoi(argv[++i]);
                else if (strcmp(argv[i], "--fork-auth") == 0)
                        fork_auth = 1;
                else
                        break;
        }
        if (argc - i != 3) {
                fprintf(stderr, "usage: pam-harness [--acct] [--rhost HOST] [--tty TTY] [--session "
                                "SECONDS] [--fork-auth] CONFDIR "
                                "SERVICE USER\n");
                return 99;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        r = pam_start_confdir(argv[i + 1], argv[i + 2], &conv, argv[i], &pamh);
        if (r != PAM_SUCCESS) {
                fprintf(stderr, "pam_start_confdir: %s\n", pam_strerror(NULL, r));
                return 98;
        }
        if (rhost)
                pam_set_item(pamh, PAM_RHOST, rhost);
        if (tty)
                pam_set_item(pamh, PAM_TTY, tty);
        r = fork_auth ? auth_in_child(pamh, acct, &child_acct) : pam_authenticate(pamh, 0);
        printf("auth=%s\n", pam_strerror(pamh, r));
        if (acct && r == PAM_SUCCESS) {
                r = fork_auth ? child_acct : pam_acct_mgmt(pamh, 0);
                printf("acct=%s\n", pam_strerror(pamh, r));
        }
        if (fork_auth && session >= 0 && r == PAM_SUCCESS) {
                r = pam_setcred(pamh, PAM_ESTABLISH_CRED);
                printf("setcred=%s\n", pam_strerror(pamh, r));
        }
        if (session >= 0 && r == PAM_SUCCESS) {
                /* A login's session: opened, held for SECONDS, closed. */
                r = pam_open_session(pamh, 0);
                if (fork_auth) {
                        char **env = pam_getenvlist(pamh);
                        for (size_t k = 0; env && env[k]; k++) {
                                printf("env: %s\n", env[k]);
                                free(env[k]);
                        }
                        free(env);
                }
                printf("session=%s\n", pam_strerror(pamh, r));
                if (r == PAM_SUCCESS) {
                        sleep((unsigned)session);
                        r = pam_close_session(pamh, 0);
                        printf("close=%s\n", pam_strerror(pamh, r));
                }
        }
        pam_end(pamh, r);
        return r;
}
