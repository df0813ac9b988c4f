/* SPDX-License-Identifier: MIT */
/*
 * bench_pam: the time of a whole PAM authentication, in process, through
 * pam_start_confdir() with service files from a directory of our own.
 *
 *   bench_pam --confdir DIR --user USER [--rounds R] [--batch B] SERVICE...
 *
 * Reads the answer to any prompt (the API key) as one line of stdin.  Each
 * round times B authentications (pam_start_confdir, pam_authenticate,
 * pam_end) of each service in turn, so the services are measured side by
 * side; every one must succeed.  Prints, per service, the mean time of one
 * authentication in each round: "<service>_rounds_us=a,b,...".  Exits 3 if
 * an authentication failed.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <security/pam_appl.h>

static char answer[512];

static int converse(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
        struct pam_response *r = calloc((size_t)n, sizeof(*r));

        if (!r)
                return PAM_BUF_ERR;
        for (int i = 0; i < n; i++)
                if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF ||
                    msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
                        r[i].resp = strdup(answer);
        *resp = r;
        return PAM_SUCCESS;
}

static double now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int authenticate(const char *confdir, const char *service, const char *user)
{
        struct pam_conv conv = {converse, NULL};
        pam_handle_t *pamh = NULL;
        int r;

        r = pam_start_confdir(service, user, &conv, confdir, &pamh);
        if (r != PAM_SUCCESS)
                return r;
        (void)pam_set_item(pamh, PAM_RHOST, "127.0.0.1");
        r = pam_authenticate(pamh, 0);
        pam_end(pamh, r);
        return r;
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"confdir", required_argument, NULL, 'c'},
            {"user", required_argument, NULL, 'u'},
            {"rounds", required_argument, NULL, 'r'},
            {"batch", required_argument, NULL, 'b'},
            {NULL, 0, NULL, 0},
        };
        const char *confdir = NULL, *user = NULL;
        int rounds = 10, batch = 200, c, n_services;
        double *times;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        confdir = optarg;
                        break;
                case 'u':
                        user = optarg;
                        break;
                case 'r':
                        rounds = atoi(optarg);
                        break;
                case 'b':
                        batch = atoi(optarg);
                        break;
                default:
                        return 2;
                }
        }
        n_services = argc - optind;
        if (!confdir || !user || rounds < 1 || batch < 1 || n_services < 1) {
                fprintf(stderr, "usage: bench_pam --confdir DIR --user USER [--rounds R] "
                                "[--batch B] SERVICE...\n");
                return 2;
        }
        if (!fgets(answer, sizeof(answer), stdin))
                answer[0] = '\0';
        answer[strcspn(answer, "\n")] = '\0';
        times = calloc((size_t)(rounds * n_services), sizeof(*times));
        if (!times)
                return 1;

        /* One untimed authentication each: the first loads libraries. */
        for (int s = 0; s < n_services; s++) {
                int r = authenticate(confdir, argv[optind + s], user);
                if (r != PAM_SUCCESS) {
                        fprintf(stderr, "bench_pam: %s: %s\n", argv[optind + s],
                                pam_strerror(NULL, r));
                        return 3;
                }
        }
        for (int round = 0; round < rounds; round++)
                for (int s = 0; s < n_services; s++) {
                        double t0 = now_us();

                        for (int i = 0; i < batch; i++) {
                                int r = authenticate(confdir, argv[optind + s], user);
                                if (r != PAM_SUCCESS) {
                                        fprintf(stderr, "bench_pam: %s: %s\n", argv[optind + s],
                                                pam_strerror(NULL, r));
                                        return 3;
                                }
                        }
                        times[round * n_services + s] = (now_us() - t0) / batch;
                }
        for (int s = 0; s < n_services; s++) {
                printf("%s_rounds_us=", argv[optind + s]);
                for (int round = 0; round < rounds; round++)
                        printf("%s%.1f", round ? "," : "", times[round * n_services + s]);
                printf("\n");
        }
        memset(answer, 0, sizeof(answer));
        free(times);
        return 0;
}
