/* SPDX-License-Identifier: MIT */
/*
 * bench_load: fill a new state directory with N keys for the benchmarks.
 *
 *   bench_load --dir DIR --keys N [--batch B] [--seed HEX]
 *
 * Creates the pepper as the daemon does, then stores the keys derived from
 * the seed (bench_keys.h) through keystore_put_keys() in batches of B
 * (default 10000), one unsynced transaction each, with the real pepper and
 * token_hash(); writes the seed file last.  Prints key=value lines: keys,
 * seconds, file_bytes, used_bytes (LMDB pages in use) and page_size.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <lmdb.h>
#include <sodium.h>

#include "bench_keys.h"
#include "keystore.h"
#include "token_crypto.h"

struct batch_slot {
        char name[32];
        char owner[BENCH_OWNER_MAX];
};

static double now_seconds(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t realtime_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Pages in use and the page size, read with raw LMDB calls after the load. */
static int store_usage(const char *path, uint64_t *ret_used, unsigned *ret_psize)
{
        MDB_env *env = NULL;
        MDB_envinfo info;
        MDB_stat st;
        int rc;

        rc = mdb_env_create(&env);
        if (rc == MDB_SUCCESS)
                rc = mdb_env_set_maxdbs(env, 8);
        if (rc == MDB_SUCCESS)
                rc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOSUBDIR | MDB_NOTLS, 0600);
        if (rc == MDB_SUCCESS)
                rc = mdb_env_info(env, &info);
        if (rc == MDB_SUCCESS)
                rc = mdb_env_stat(env, &st);
        if (rc == MDB_SUCCESS) {
                *ret_used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
                *ret_psize = st.ms_psize;
        }
        if (env)
                mdb_env_close(env);
        return rc == MDB_SUCCESS ? 0 : -EIO;
}

static int load(const char *dir, uint64_t n, size_t batch, const struct bench_seed *seed)
{
        struct keystore_options opts = {.flags = KEYSTORE_NOSYNC};
        _cleanup_free_ struct key_record *recs = NULL;
        _cleanup_free_ struct batch_slot *slots = NULL;
        _cleanup_free_ char *err = NULL;
        struct keystore *ks = NULL;
        uint8_t *pepper = NULL;
        char path[4096];
        uint64_t created = realtime_usec(), used = 0;
        unsigned psize = 0;
        double t0 = now_seconds();
        struct stat st;
        int r;

        snprintf(path, sizeof(path), "%s/%s", dir, KEYSTORE_FILE);
        if (access(path, F_OK) == 0) {
                fprintf(stderr, "bench_load: %s exists; give a new directory\n", path);
                return -EEXIST;
        }
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                fprintf(stderr, "bench_load: cannot create %s: %m\n", dir);
                return -errno;
        }
        recs = calloc(batch, sizeof(*recs));
        slots = calloc(batch, sizeof(*slots));
        pepper = sodium_malloc(PEPPER_SIZE);
        if (!recs || !slots || !pepper) {
                sodium_free(pepper);
                return -ENOMEM;
        }
        r = pepper_load(dir, true, pepper, &err);
        if (r >= 0)
                r = keystore_open(dir, &opts, &ks, &err);
        if (r < 0) {
                fprintf(stderr, "bench_load: %s\n", err ? err : strerror(-r));
                sodium_free(pepper);
                return r;
        }

        for (uint64_t done = 0; done < n && r >= 0;) {
                size_t m = n - done < batch ? (size_t)(n - done) : batch;

                for (size_t k = 0; k < m && r >= 0; k++) {
                        uint64_t i = done + k;
                        struct key_record *rec = &recs[k];
                        char token[TOKEN_MAX_LEN + 1];
                        struct token t;
                        int len = bench_key_token(seed, i, false, token);

                        if (len < 0 || token_parse(token, (size_t)len, NULL, &t, NULL) < 0) {
                                r = -EINVAL;
                                break;
                        }
                        *rec = (struct key_record){
                            .status = KEY_STATUS_ENABLED,
                            .role = KEY_ROLE_READONLY,
                            .permissions = key_role_permissions(KEY_ROLE_READONLY),
                            .created_at = created,
                            .created_by = "bench-load",
                        };
                        memcpy(rec->id, t.id, sizeof(rec->id));
                        token_hash(pepper, &t, rec->hash);
                        snprintf(slots[k].name, sizeof(slots[k].name), "key-%" PRIu64, i);
                        bench_key_owner(i, slots[k].owner);
                        rec->name = slots[k].name;
                        rec->owner = slots[k].owner;
                        sodium_memzero(token, sizeof(token));
                }
                if (r >= 0)
                        r = keystore_put_keys(ks, recs, m);
                if (r < 0)
                        fprintf(stderr, "bench_load: storing keys %" PRIu64 "..%" PRIu64 ": %s\n",
                                done, done + m, strerror(-r));
                done += m;
        }
        keystore_close(ks);
        sodium_free(pepper);
        if (r < 0)
                return r;
        r = bench_seed_write(dir, seed);
        if (r < 0) {
                fprintf(stderr, "bench_load: writing the seed file: %s\n", strerror(-r));
                return r;
        }
        if (stat(path, &st) < 0 || store_usage(path, &used, &psize) < 0) {
                fprintf(stderr, "bench_load: cannot read back %s\n", path);
                return -EIO;
        }
        printf("keys=%" PRIu64 "\nseconds=%.2f\nfile_bytes=%lld\nused_bytes=%" PRIu64
               "\npage_size=%u\n",
               n, now_seconds() - t0, (long long)st.st_size, used, psize);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"dir", required_argument, NULL, 'd'},
            {"keys", required_argument, NULL, 'n'},
            {"batch", required_argument, NULL, 'b'},
            {"seed", required_argument, NULL, 's'},
            {NULL, 0, NULL, 0},
        };
        struct bench_seed seed = {.prefix = TOKEN_DEFAULT_PREFIX};
        const char *dir = NULL, *seed_hex = NULL;
        unsigned long long n = 0, batch = 10000;
        int c;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                switch (c) {
                case 'd':
                        dir = optarg;
                        break;
                case 'n':
                        n = strtoull(optarg, NULL, 10);
                        break;
                case 'b':
                        batch = strtoull(optarg, NULL, 10);
                        break;
                case 's':
                        seed_hex = optarg;
                        break;
                default:
                        return 2;
                }
        }
        if (!dir || n == 0 || batch == 0 || optind != argc) {
                fprintf(stderr, "usage: bench_load --dir DIR --keys N [--batch B] [--seed HEX]\n");
                return 2;
        }
        if (token_crypto_init() < 0)
                return 1;
        if (seed_hex) {
                if (sodium_hex2bin(seed.seed, sizeof(seed.seed), seed_hex, strlen(seed_hex), NULL,
                                   NULL, NULL) < 0) {
                        fprintf(stderr, "bench_load: --seed takes %d hex bytes\n", BENCH_SEED_SIZE);
                        return 2;
                }
        } else
                randombytes_buf(seed.seed, sizeof(seed.seed));
        seed.n_keys = n;
        umask(0077);
        return load(dir, n, (size_t)batch, &seed) < 0 ? 1 : 0;
}
