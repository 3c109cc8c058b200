/* Helpers shared by test_file.c and test_file_sweep.c: a fresh directory per test, reading and
 * listing files, and finding temporaries. */
#ifndef CT_TEST_FILE_UTIL_H
#define CT_TEST_FILE_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/file.h"
#include "ct/token.h"
#include "ct/wait.h"
#include "testutil.h"

#define MIB ((size_t) 1 << 20)

#define MIB ((size_t) 1 << 20)

/* ---- helpers ------------------------------------------------------------------------------- */

static inline int setup_dir(void **state)
{
    char *dir = malloc(64);
    assert_non_null(dir);
    strcpy(dir, "/tmp/ct-test-file-XXXXXX");
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static inline int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path);
}

static inline int remove_dir(void **state)
{
    char *dir = *state;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return 0;
}

static const char *at(const char *dir, const char *name)
{
    static char buf[4][PATH_MAX];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    return p;
}

static inline void fill(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char) ((i * 31 + seed) & 0xff);
}

static inline char *xmalloc(size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* The whole content of `path` (malloc'ed), or NULL if it cannot be opened. */
static inline char *slurp_fd(int fd, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap)
            buf = realloc(buf, cap *= 2);
        assert_non_null(buf);
        ssize_t r = read(fd, buf + n, cap - n);
        assert_true(r >= 0);
        if (r == 0)
            break;
        n += (size_t) r;
    }
    *len = n;
    return buf;
}

static inline char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = slurp_fd(fd, len);
    close(fd);
    return buf;
}

static inline void put(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal((ssize_t) len, write(fd, data, len));
    close(fd);
}

static inline void assert_content(const char *path, const void *want, size_t want_len)
{
    size_t len;
    char *got = slurp(path, &len);
    assert_non_null(got);
    assert_int_equal(want_len, len);
    assert_memory_equal(want, got, len);
    free(got);
}

static inline bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static inline int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The names in `dir`, sorted, joined with spaces ("" if empty): easy to compare and to print. */
static const char *listing(const char *dir)
{
    static char out[8192];
    char *names[256];
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            assert_true(n < 256);
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t) n, sizeof(names[0]), cmp_names);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(out, " ");
        assert_true(strlen(out) + strlen(names[i]) + 2 < sizeof(out));
        strcat(out, names[i]);
        free(names[i]);
    }
    return out;
}

static inline bool looks_like_temp(const char *name, const char *base)
{
    if (strncmp(name, ".ct-tmp.", 8) != 0 || strlen(name) < 26 || name[24] != '.')
        return false;
    for (int i = 8; i < 24; i++)
        if (!strchr("0123456789abcdef", name[i]))
            return false;
    /* The final name, cut to fit NAME_MAX. */
    return strncmp(name + 25, base, strlen(name + 25)) == 0;
}

/* The one temporary of a writer of `base` in `dir` (copied to `out`); NULL if there is none. */
static const char *find_temp(const char *dir, const char *base, char out[NAME_MAX + 1])
{
    int found = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (looks_like_temp(e->d_name, base)) {
            strcpy(out, e->d_name);
            found++;
        }
    }
    closedir(d);
    assert_true(found <= 1);
    return found ? out : NULL;
}

static inline int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

static inline bool tmpfile_supported(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static inline ct_source_t *new_source(void)
{
    ct_source_t *s;
    assert_int_equal(0, ct_source_new(&s));
    return s;
}

static const int modes[] = {0, CT_FILE_NAMED_TEMP};

static inline mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(0, stat(path, &st));
    return st.st_mode & 07777;
}

static inline void publish(const char *path, mode_t mode, int flags, const char *text)
{
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, path, mode, flags));
    assert_int_equal((ssize_t) strlen(text), ct_file_write(f, text, strlen(text), NULL));
    assert_int_equal(0, ct_file_commit(f, NULL));
    ct_file_free(f);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup_dir, remove_dir)

#endif
