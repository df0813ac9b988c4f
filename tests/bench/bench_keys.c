/* SPDX-License-Identifier: MIT */
/* The benchmark's seed-derived keys and the seed file; see bench_keys.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "bench_keys.h"

/* `n` base62 characters from BLAKE2b(key = seed, message = domain || i). */
static void derive(const struct bench_seed *s, const char *domain, uint64_t i, char *ret, size_t n)
{
        uint8_t msg[16 + 8], out[64];
        size_t dlen = strlen(domain);

        memset(msg, 0, sizeof(msg));
        memcpy(msg, domain, dlen < 16 ? dlen : 16);
        for (int b = 0; b < 8; b++)
                msg[16 + b] = (uint8_t)(i >> (8 * b));
        crypto_generichash(out, sizeof(out), msg, sizeof(msg), s->seed, sizeof(s->seed));
        for (size_t k = 0; k < n; k++)
                ret[k] = BASE62_ALPHABET[out[k] % 62];
        ret[n] = '\0';
}

void bench_key_id(const struct bench_seed *s, uint64_t i, char ret[TOKEN_ID_LEN + 1])
{
        derive(s, "id", i, ret, TOKEN_ID_LEN);
}

void bench_unknown_id(const struct bench_seed *s, uint64_t j, char ret[TOKEN_ID_LEN + 1])
{
        derive(s, "unknown-id", j, ret, TOKEN_ID_LEN);
}

int bench_token_for_id(const struct bench_seed *s, const char *id, uint64_t j,
                       char ret[TOKEN_MAX_LEN + 1])
{
        char secret[TOKEN_SECRET_LEN + 1];

        derive(s, "other-secret", j, secret, TOKEN_SECRET_LEN);
        return token_format(s->prefix, id, secret, ret, TOKEN_MAX_LEN + 1);
}

int bench_key_token(const struct bench_seed *s, uint64_t i, bool wrong, char ret[TOKEN_MAX_LEN + 1])
{
        char id[TOKEN_ID_LEN + 1], secret[TOKEN_SECRET_LEN + 1];

        bench_key_id(s, i, id);
        derive(s, wrong ? "wrong-secret" : "secret", i, secret, TOKEN_SECRET_LEN);
        return token_format(s->prefix, id, secret, ret, TOKEN_MAX_LEN + 1);
}

void bench_key_owner(uint64_t i, char ret[BENCH_OWNER_MAX])
{
        snprintf(ret, BENCH_OWNER_MAX, "bench%03u", (unsigned)(i % BENCH_OWNERS));
}

int bench_seed_write(const char *dir, const struct bench_seed *s)
{
        char path[4096], hex[2 * BENCH_SEED_SIZE + 1];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, BENCH_SEED_FILE);
        f = fopen(path, "we");
        if (!f)
                return -errno;
        sodium_bin2hex(hex, sizeof(hex), s->seed, sizeof(s->seed));
        fprintf(f, "seed=%s\nkeys=%" PRIu64 "\nprefix=%s\n", hex, s->n_keys, s->prefix);
        if (fclose(f) != 0)
                return -errno;
        return 0;
}

int bench_seed_read(const char *dir, struct bench_seed *ret)
{
        char path[4096], line[256];
        bool have_seed = false, have_keys = false;
        FILE *f;

        memset(ret, 0, sizeof(*ret));
        snprintf(ret->prefix, sizeof(ret->prefix), "%s", TOKEN_DEFAULT_PREFIX);
        snprintf(path, sizeof(path), "%s/%s", dir, BENCH_SEED_FILE);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                if (strncmp(line, "seed=", 5) == 0)
                        have_seed = sodium_hex2bin(ret->seed, sizeof(ret->seed), line + 5,
                                                   strlen(line + 5), NULL, NULL, NULL) == 0;
                else if (strncmp(line, "keys=", 5) == 0)
                        have_keys = sscanf(line + 5, "%" SCNu64, &ret->n_keys) == 1;
                else if (strncmp(line, "prefix=", 7) == 0 && strlen(line + 7) < sizeof(ret->prefix))
                        memcpy(ret->prefix, line + 7, strlen(line + 7) + 1);
        }
        fclose(f);
        if (!have_seed || !have_keys || ret->n_keys == 0 || !token_prefix_valid(ret->prefix))
                return -EBADMSG;
        return 0;
}
