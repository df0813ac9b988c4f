/* SPDX-License-Identifier: MIT */
/*
 * A main() for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput
 * once over every file named on the command line, and over every regular file
 * in every directory named (not recursively, in name order).  Built with the
 * ordinary compiler, so the committed corpora replay wherever the project
 * builds; a crash or sanitizer report fails the run as it would under
 * libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: only some targets define it. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* The whole file in a heap block of exactly its size, so ASan sees overreads. */
static int read_input(const char *path, uint8_t **ret, size_t *ret_len)
{
        FILE *f = fopen(path, "rbe");
        uint8_t *buf = NULL;
        size_t len = 0, alloc = 0;
        int r = 0;

        if (!f)
                return -errno;
        for (;;) {
                if (len == alloc) {
                        uint8_t *n;

                        alloc = alloc ? alloc * 2 : 4096;
                        n = realloc(buf, alloc);
                        if (!n) {
                                r = -ENOMEM;
                                break;
                        }
                        buf = n;
                }
                size_t got = fread(buf + len, 1, alloc - len, f);
                len += got;
                if (got == 0) {
                        if (ferror(f))
                                r = -EIO;
                        break;
                }
        }
        fclose(f);
        if (r < 0) {
                free(buf);
                return r;
        }
        /* Shrink to fit: the slack of the read buffer would hide overreads. */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact) {
                free(buf);
                return -ENOMEM;
        }
        if (len)
                memcpy(exact, buf, len);
        free(buf);
        *ret = exact;
        *ret_len = len;
        return 0;
}

static int run_file(const char *path)
{
        uint8_t *data = NULL;
        size_t len = 0;
        int r = read_input(path, &data, &len);

        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }
        (void)LLVMFuzzerTestOneInput(data, len);
        free(data);
        return 0;
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file in `dir`, in name order; returns how many ran, or -errno. */
static int run_dir(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        char **names = NULL;
        size_t n = 0, alloc = 0;
        int ran = 0, r = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                if (n == alloc) {
                        char **nn;

                        alloc = alloc ? alloc * 2 : 64;
                        nn = realloc(names, alloc * sizeof(*names));
                        if (!nn) {
                                r = -ENOMEM;
                                break;
                        }
                        names = nn;
                }
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(*names), compare_names);
        for (size_t i = 0; i < n; i++) {
                char path[4096];
                struct stat st;

                if (r == 0 &&
                    snprintf(path, sizeof(path), "%s/%s", dir, names[i]) < (int)sizeof(path) &&
                    stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        r = run_file(path);
                        if (r == 0)
                                ran++;
                }
                free(names[i]);
        }
        free(names);
        return r < 0 ? r : ran;
}

int main(int argc, char **argv)
{
        const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
        int total = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: %s FILE|DIR...\n", name);
                return 2;
        }
        if (LLVMFuzzerInitialize)
                (void)LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                struct stat st;
                int r;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s: %s\n", name, argv[i], strerror(errno));
                        return 1;
                }
                if (S_ISDIR(st.st_mode))
                        r = run_dir(argv[i]);
                else
                        r = run_file(argv[i]) < 0 ? -EIO : 1;
                if (r < 0) {
                        fprintf(stderr, "%s: %s: %s\n", name, argv[i], strerror(-r));
                        return 1;
                }
                total += r;
        }
        printf("%s: replayed %d inputs\n", name, total);
        return 0;
}
