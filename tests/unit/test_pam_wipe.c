/* SPDX-License-Identifier: MIT */
/*
 * The PAM module leaves no copy of the token in freed memory: every block
 * the module (and the common code linked into it) frees is searched for the
 * secret on its way out, through the linker's --wrap=free.  The module's
 * request path runs for real against a listener on a temporary socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <malloc.h>
#include <pthread.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The module's file itself, so its static functions are reachable. */
#include "../../pam_apikey/pam_apikey.c"

#define TOKEN       "apk_7Hq2LmX9aB3z_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg0fGyu7"
#define SECRET_PART "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"

void __real_free(void *p);
void __wrap_free(void *p);

/* volatile: the compiler knows free() and would assume it touches neither. */
static volatile unsigned freed_with_secret;
static volatile bool watching;

void __wrap_free(void *p)
{
        if (p && watching && memmem(p, malloc_usable_size(p), SECRET_PART, strlen(SECRET_PART)))
                freed_with_secret++;
        __real_free(p);
}

struct listener {
        char path[108];
        int fd;
        const char *reply; /* sent after the request; NULL: close without answering */
        char request[4096];
        size_t request_len;
};

static void *serve(void *arg)
{
        struct listener *l = arg;
        int c = accept(l->fd, NULL, NULL);
        ssize_t n;

        if (c < 0)
                return NULL;
        while ((n = read(c, l->request + l->request_len, sizeof(l->request) - 1 - l->request_len)) >
               0) {
                l->request_len += (size_t)n;
                if (memchr(l->request, '\0', l->request_len))
                        break;
        }
        if (l->reply)
                (void)!write(c, l->reply, strlen(l->reply) + 1);
        close(c);
        return NULL;
}

static void listener_start(struct listener *l, const char *reply, pthread_t *t)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        memset(l, 0, sizeof(*l));
        snprintf(l->path, sizeof(l->path), "/tmp/test-pam-wipe.%d.sock", (int)getpid());
        unlink(l->path);
        l->reply = reply;
        l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(l->fd >= 0);
        memcpy(sa.sun_path, l->path, strlen(l->path));
        assert_int_equal(bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(l->fd, 1), 0);
        assert_int_equal(pthread_create(t, NULL, serve, l), 0);
}

static void listener_stop(struct listener *l, pthread_t t)
{
        pthread_join(t, NULL);
        close(l->fd);
        unlink(l->path);
}

static struct options test_options(const char *socket_path)
{
        struct options o = {.timeout_ms = 2000};

        snprintf(o.socket, sizeof(o.socket), "%s", socket_path);
        return o;
}

static int no_conversation(int n, const struct pam_message **msg, struct pam_response **resp,
                           void *data)
{
        return PAM_CONV_ERR;
}

/* A real PAM handle, from a service directory of the test's own. */
static pam_handle_t *handle(void)
{
        static const struct pam_conv conv = {no_conversation, NULL};
        char dir[] = "/tmp/test-pam-wipe.XXXXXX", path[64];
        pam_handle_t *pamh = NULL;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/other", dir);
        f = fopen(path, "we");
        assert_non_null(f);
        fputs("auth required pam_permit.so\n", f);
        fclose(f);
        assert_int_equal(pam_start_confdir("pam-wipe-test", "alice", &conv, dir, &pamh),
                         PAM_SUCCESS);
        unlink(path);
        rmdir(dir);
        assert_int_equal(pam_set_item(pamh, PAM_TTY, "pts/1"), PAM_SUCCESS);
        return pamh;
}

static void run(const char *reply, int want_r, const char *want_code)
{
        struct listener l;
        struct verify_reply ans;
        pthread_t t;
        int r;

        if (geteuid() != 0)
                skip(); /* the module sends only to a socket root serves */
        listener_start(&l, reply, &t);
        struct options o = test_options(l.path);
        /* A token that is only in a buffer of the test's own, as PAM holds it. */
        char *token = strdup(TOKEN);
        assert_non_null(token);

        pam_handle_t *pamh = handle();

        freed_with_secret = 0;
        watching = true;
        r = ask_daemon(pamh, &o, token, strlen(token), "alice", "sshd", "192.0.2.7", &ans);
        watching = false;
        listener_stop(&l, t);
        pam_end(pamh, PAM_SUCCESS);

        assert_int_equal(r, want_r);
        if (want_code)
                assert_string_equal(ans.code, want_code);
        /* The request did carry the token to the daemon, with the terminal... */
        assert_non_null(
            memmem(l.request, l.request_len, "\"tty\":\"pts/1\"", strlen("\"tty\":\"pts/1\"")));
        assert_non_null(memmem(l.request, l.request_len, TOKEN, strlen(TOKEN)));
        /* ...and no block the module freed still held it. */
        assert_int_equal(freed_with_secret, 0);
        explicit_bzero(token, strlen(token));
        free(token);
}

static void test_valid_answer(void **state)
{
        run("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"key\":{\"id\":\"7Hq2LmX9aB3z\"}}"
            "}",
            0, "VALID");
}

static void test_refusal(void **state)
{
        run("{\"parameters\":{\"valid\":false,\"code\":\"REVOKED\"}}", 0, "REVOKED");
}

static void test_daemon_hangs_up(void **state)
{
        run(NULL, -ECONNRESET, NULL);
}

static void test_garbled_answer(void **state)
{
        run("{\"parameters\":", -EBADMSG, NULL);
}

static void test_the_watch_works(void **state)
{
        /* The check itself: a block freed with the secret in it is seen. */
        char *p = strdup(TOKEN);

        assert_non_null(p);
        freed_with_secret = 0;
        watching = true;
        free(p);
        watching = false;
        assert_int_equal(freed_with_secret, 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_the_watch_works), cmocka_unit_test(test_valid_answer),
            cmocka_unit_test(test_refusal),         cmocka_unit_test(test_daemon_hangs_up),
            cmocka_unit_test(test_garbled_answer),
        };
        return cmocka_run_group_tests_name("pam_wipe", tests, NULL, NULL);
}
