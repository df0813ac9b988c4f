/* SPDX-License-Identifier: MIT */
/* The fleet replica's setup and teardown: settings, endpoints, password, timers. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "fleet_internal.h"
#include "log.h"
#include "timeutil.h"

/* ---- setup ---- */

char *fleet_prefix_end_b64(const char *prefix)
{
        _cleanup_free_ char *end = strdup(prefix);
        size_t n;

        if (!end)
                return NULL;
        /* The range end of a prefix: its last byte plus one ('/' -> '0'). */
        n = strlen(end);
        end[n - 1]++;
        return etcd_base64(end, n);
}

static int split_endpoints(struct fleet *f, const char *list)
{
        size_t n = 1;

        for (const char *p = list; *p; p++)
                n += *p == ',';
        f->endpoints = calloc(n, sizeof(char *));
        if (!f->endpoints)
                return -ENOMEM;
        for (const char *p = list; f->n_endpoints < n;) {
                size_t len = strcspn(p, ",");

                f->endpoints[f->n_endpoints] = strndup(p, len);
                if (!f->endpoints[f->n_endpoints])
                        return -ENOMEM;
                f->n_endpoints++;
                p += len + (p[len] == ',');
        }
        /* Shuffled, so that a fleet's hosts do not all start on the first. */
        for (size_t i = n; i > 1; i--) {
                size_t j = randombytes_uniform((uint32_t)i);
                char *t = f->endpoints[i - 1];

                f->endpoints[i - 1] = f->endpoints[j];
                f->endpoints[j] = t;
        }
        return 0;
}

/* The password in `path`: its first line, at most 1 KiB. */
static int read_password(const char *path, char **ret)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        char buf[1026];
        size_t len;
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return -errno;
        for (len = 0; len < (size_t)n && buf[len] != '\r' && buf[len] != '\n'; len++)
                if (buf[len] == '\0')
                        len = sizeof(buf); /* a NUL in the password */
        if (len == 0 || len > 1024) {
                explicit_bzero(buf, sizeof(buf));
                return -EBADMSG;
        }
        buf[len] = '\0';
        *ret = strdup(buf);
        explicit_bzero(buf, sizeof(buf));
        return *ret ? 0 : -ENOMEM;
}

int fleet_new(const struct fleet_setup *s, struct fleet **ret)
{
        const struct apikeyd_config *cfg = s->config;
        _cleanup_free_ char *fp_key = NULL;
        struct etcd_tls tls = {
            .cacert = cfg->fleet_cacert, .cert = cfg->fleet_cert, .key = cfg->fleet_key};
        struct fleet *f;
        int r;

        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        if (cfg->fleet_user) {
                r = read_password(cfg->fleet_password_file, &f->password);
                if (r < 0) {
                        log_error("fleet: cannot read fleet_password_file %s: %s",
                                  cfg->fleet_password_file,
                                  r == -EBADMSG ? "empty, longer than 1 KiB, or holding a NUL"
                                                : strerror(-r));
                        free(f);
                        return r;
                }
        }
        f->cfg = cfg;
        f->event = sd_event_ref(s->event);
        f->ks = s->ks;
        f->writer = s->writer;
        memcpy(f->fp, s->pepper_fingerprint, sizeof(f->fp));
        etcd_lines_init(&f->lines, 0);
        if (cfg->fleet_host)
                str_copy(f->host, sizeof(f->host), cfg->fleet_host);
        else if (gethostname(f->host, sizeof(f->host) - 1) < 0)
                str_copy(f->host, sizeof(f->host), "localhost");

        r = -ENOMEM;
        if (split_endpoints(f, cfg->fleet_endpoints) < 0)
                goto fail;
        if (asprintf(&f->keys_prefix, "%s/keys/", cfg->fleet_prefix) < 0 ||
            asprintf(&fp_key, "%s/pepper-fingerprint", cfg->fleet_prefix) < 0) {
                f->keys_prefix = NULL;
                goto fail;
        }
        f->keys_prefix_b64 = etcd_base64(f->keys_prefix, strlen(f->keys_prefix));
        f->keys_end_b64 = fleet_prefix_end_b64(f->keys_prefix);
        f->fp_key_b64 = etcd_base64(fp_key, strlen(fp_key));
        if (!f->keys_prefix_b64 || !f->keys_end_b64 || !f->fp_key_b64)
                goto fail;

        r = keystore_fleet_state(s->ks, &f->applied, &f->cluster_id, &f->contact_real);
        if (r < 0) {
                log_error("fleet: cannot read the replica's revision: %s", strerror(-r));
                goto fail;
        }
        if (f->applied == 0) {
                uint64_t n = 0;

                r = keystore_n_keys(s->ks, &n);
                if (r < 0)
                        goto fail;
                if (n > 0) {
                        log_error("fleet: the keystore holds %llu keys of this host alone; in "
                                  "fleet mode it holds the fleet's keys from etcd, which would "
                                  "replace them: not following etcd until they are moved there "
                                  "(apikeyctl fleet push), answering for them meanwhile; or "
                                  "start with an empty state directory",
                                  (unsigned long long)n);
                        f->joining = n;
                }
        }
        /* Checked by the config: ids, comma-separated, at most CONFIG_FLEET_BREAK_GLASS_MAX. */
        for (const char *p = cfg->fleet_break_glass_keys;
             p && *p && f->n_break_glass < CONFIG_FLEET_BREAK_GLASS_MAX;) {
                size_t len = strcspn(p, ",");

                if (len == TOKEN_ID_LEN)
                        memcpy(f->break_glass[f->n_break_glass++], p, TOKEN_ID_LEN);
                p += len + (p[len] == ',');
        }
        f->state_lock_fd = s->state_lock_fd;
        r = -ENOMEM;
        if ((s->config_path && !(f->config_path = strdup(s->config_path))) ||
            (s->state_dir && !(f->state_dir = strdup(s->state_dir))))
                goto fail;
        f->queued = f->applied;
        f->contact_saved = f->contact_real;
        /* A manager starts from etcd's truth. */
        f->force_resync = cfg->fleet_manage;

        r = etcd_client_new(s->event, &tls, &f->client);
        if (r >= 0)
                r = sd_event_add_time_relative(s->event, &f->retry_timer, CLOCK_MONOTONIC,
                                               UINT64_MAX / 2, 0, fleet_on_retry, f);
        if (r >= 0)
                r = sd_event_source_set_enabled(f->retry_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time_relative(s->event, &f->probe_timer, CLOCK_MONOTONIC,
                                               PROBE_INTERVAL, 0, fleet_on_probe_timer, f);
        if (r >= 0)
                r = sd_event_add_time_relative(s->event, &f->resync_timer, CLOCK_MONOTONIC,
                                               fleet_resync_delay(), 0, fleet_on_resync_timer, f);
        if (r < 0) {
                log_error("fleet: cannot set up the etcd client: %s", strerror(-r));
                goto fail;
        }
        if (f->joining)
                goto done;
        log_info("fleet: host %s following %s under %s from revision %lld (%s)", f->host,
                 cfg->fleet_endpoints, cfg->fleet_prefix, (long long)f->applied,
                 cfg->fleet_manage ? "manages keys" : "keys managed elsewhere");
        fleet_start(f);
done:
        *ret = f;
        return 0;
fail:
        fleet_free(f);
        return r;
}

void fleet_free(struct fleet *f)
{
        if (!f)
                return;
        f->stopping = true;
        fleet_push_stop(f);
        fleet_waiters_wake(f, -ESHUTDOWN);
        fleet_stop_requests(f);
        etcd_request_cancel(f->report);
        etcd_request_cancel(f->hosts_req);
        etcd_request_cancel(f->used_req);
        etcd_request_cancel(f->probe);
        fleet_resync_reset(&f->rs);
        free(f->lines.buf);
        etcd_client_free(f->client);
        sd_event_source_disable_unref(f->retry_timer);
        sd_event_source_disable_unref(f->probe_timer);
        sd_event_source_disable_unref(f->resync_timer);
        sd_event_unref(f->event);
        for (size_t i = 0; i < f->n_endpoints; i++)
                free(f->endpoints[i]);
        free(f->endpoints);
        free(f->keys_prefix);
        free(f->keys_prefix_b64);
        free(f->keys_end_b64);
        free(f->fp_key_b64);
        free(f->modrevs);
        free(f->config_path);
        free(f->state_dir);
        free(f->hosts);
        free(f->hosts_new);
        free(f->hosts_next);
        fleet_uses_free(&f->used);
        fleet_uses_free(&f->used_sent);
        fleet_uses_free(&f->seen);
        if (f->password)
                erase_and_free(f->password);
        free(f->token);
        free(f);
}
