/* Cancel-safe file output on a real file system, each test in its own directory under /tmp.
 * Processes that must be killed mid-write are lined up with pipes: the child reports after N
 * chunks and blocks; the parent looks, then kills it. Nothing here sleeps to synchronise. */
#define _GNU_SOURCE
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

/* ---- helpers ------------------------------------------------------------------------------- */

static int setup_dir(void **state)
{
    char *dir = malloc(64);
    assert_non_null(dir);
    strcpy(dir, "/tmp/ct-test-file-XXXXXX");
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path);
}

static int remove_dir(void **state)
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

static void fill(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char) ((i * 31 + seed) & 0xff);
}

static char *xmalloc(size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* The whole content of `path` (malloc'ed), or NULL if it cannot be opened. */
static char *slurp_fd(int fd, size_t *len)
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

static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = slurp_fd(fd, len);
    close(fd);
    return buf;
}

static void put(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal((ssize_t) len, write(fd, data, len));
    close(fd);
}

static void assert_content(const char *path, const void *want, size_t want_len)
{
    size_t len;
    char *got = slurp(path, &len);
    assert_non_null(got);
    assert_int_equal(want_len, len);
    assert_memory_equal(want, got, len);
    free(got);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int cmp_names(const void *a, const void *b)
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

static bool looks_like_temp(const char *name, const char *base)
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

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

static bool tmpfile_supported(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static ct_source_t *new_source(void)
{
    ct_source_t *s;
    assert_int_equal(0, ct_source_new(&s));
    return s;
}

static const int modes[] = {0, CT_FILE_NAMED_TEMP};

/* ---- commit -------------------------------------------------------------------------------- */

static void test_commit_publishes_the_exact_bytes_and_leaves_no_temporary(void **state)
{
    const char *dir = *state;
    const size_t sizes[] = {0, 1, 4095, 3 * MIB + 17, 5};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        total += sizes[i];
    char *data = xmalloc(total);
    fill(data, total, 7);

    for (int m = 0; m < 2; m++) {
        ct_file_t *f;
        assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, modes[m]));
        size_t off = 0;
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            assert_int_equal((ssize_t) sizes[i], ct_file_write(f, data + off, sizes[i], NULL));
            off += sizes[i];
        }
        assert_false(exists(at(dir, "out.bin")));
        assert_int_equal(0, ct_file_commit(f, NULL));
        ct_file_free(f);
        assert_content(at(dir, "out.bin"), data, total);
        assert_string_equal("out.bin", listing(dir));
        assert_int_equal(0, unlink(at(dir, "out.bin")));
    }
    free(data);
}

static void test_empty_file_is_published(void **state)
{
    const char *dir = *state;
    for (int m = 0; m < 2; m++) {
        ct_file_t *f;
        assert_int_equal(0, ct_file_new(&f, at(dir, "empty"), 0600, modes[m]));
        assert_int_equal(0, ct_file_commit(f, NULL));
        ct_file_free(f);
        assert_content(at(dir, "empty"), "", 0);
        assert_string_equal("empty", listing(dir));
    }
}

static void test_named_temporary_is_visible_while_writing_and_gone_after_commit(void **state)
{
    const char *dir = *state;
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, CT_FILE_NAMED_TEMP));
    char buf[NAME_MAX + 1];
    const char *tmp = find_temp(dir, "out.bin", buf);
    assert_non_null(tmp);
    assert_string_equal(tmp, listing(dir)); /* the only entry */
    assert_int_equal(5, ct_file_write(f, "hello", 5, NULL));
    struct stat st;
    assert_int_equal(0, stat(at(dir, tmp), &st));
    assert_int_equal(5, st.st_size);
    assert_false(exists(at(dir, "out.bin")));
    assert_int_equal(0, ct_file_commit(f, NULL));
    ct_file_free(f);
    assert_string_equal("out.bin", listing(dir));
    assert_content(at(dir, "out.bin"), "hello", 5);
}

static void test_unnamed_temporary_leaves_no_name_while_writing(void **state)
{
    const char *dir = *state;
    if (!tmpfile_supported(dir))
        skip();
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, 0));
    assert_int_equal(5, ct_file_write(f, "hello", 5, NULL));
    assert_string_equal("", listing(dir));
    assert_int_equal(0, ct_file_commit(f, NULL));
    ct_file_free(f);
    assert_string_equal("out.bin", listing(dir));
    assert_content(at(dir, "out.bin"), "hello", 5);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(0, stat(path, &st));
    return st.st_mode & 07777;
}

static void publish(const char *path, mode_t mode, int flags, const char *text)
{
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, path, mode, flags));
    assert_int_equal((ssize_t) strlen(text), ct_file_write(f, text, strlen(text), NULL));
    assert_int_equal(0, ct_file_commit(f, NULL));
    ct_file_free(f);
}

static void test_commit_applies_mode_and_umask(void **state)
{
    const char *dir = *state;
    mode_t old = umask(022);
    for (int m = 0; m < 2; m++) {
        umask(022);
        publish(at(dir, "a"), 0640, modes[m], "a");
        assert_int_equal(0640, mode_of(at(dir, "a")));
        publish(at(dir, "a"), 0666, modes[m], "a"); /* replacing takes the new mode */
        assert_int_equal(0644, mode_of(at(dir, "a")));
        umask(077);
        publish(at(dir, "a"), 0644, modes[m], "a");
        assert_int_equal(0600, mode_of(at(dir, "a")));
        publish(at(dir, "a"), 0400, modes[m], "read-only is fine");
        assert_int_equal(0400, mode_of(at(dir, "a")));
        assert_content(at(dir, "a"), "read-only is fine", 17);
    }
    umask(old);
}

static void test_relative_path_is_resolved_when_the_file_is_created(void **state)
{
    const char *dir = *state;
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    for (int m = 0; m < 2; m++) {
        assert_int_equal(0, chdir(dir));
        ct_file_t *f;
        assert_int_equal(0, ct_file_new(&f, "rel.txt", 0644, modes[m]));
        assert_int_equal(0, chdir("/")); /* the directory was pinned by new */
        assert_int_equal(3, ct_file_write(f, "rel", 3, NULL));
        assert_int_equal(0, ct_file_commit(f, NULL));
        ct_file_free(f);
        assert_content(at(dir, "rel.txt"), "rel", 3);
        assert_false(exists("/rel.txt"));
    }
    assert_int_equal(0, chdir(cwd));
}

static void test_longest_final_name_is_cut_in_the_temporary_name(void **state)
{
    const char *dir = *state;
    char name[NAME_MAX + 2];
    memset(name, 'n', NAME_MAX);
    name[NAME_MAX] = '\0';
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, at(dir, name), 0644, CT_FILE_NAMED_TEMP));
    char buf[NAME_MAX + 1];
    const char *tmp = find_temp(dir, name, buf);
    assert_non_null(tmp);
    assert_int_equal(NAME_MAX, strlen(tmp));
    assert_int_equal(0, ct_file_commit(f, NULL));
    ct_file_free(f);
    assert_string_equal(name, listing(dir));

    name[NAME_MAX] = 'n';
    name[NAME_MAX + 1] = '\0';
    f = (ct_file_t *) 1;
    assert_int_equal(-ENAMETOOLONG, ct_file_new(&f, at(dir, name), 0644, 0));
    assert_null(f);
}

static void test_commit_twice_or_write_after_commit_returns_einval(void **state)
{
    const char *dir = *state;
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, at(dir, "out"), 0644, 0));
    assert_int_equal(2, ct_file_write(f, "ok", 2, NULL));
    assert_int_equal(0, ct_file_commit(f, NULL));
    assert_int_equal(-EINVAL, ct_file_commit(f, NULL));
    assert_int_equal(-EINVAL, ct_file_write(f, "more", 4, NULL));
    ct_file_free(f); /* after a commit: leaves the published file alone */
    assert_content(at(dir, "out"), "ok", 2);
}

/* ---- replacing ----------------------------------------------------------------------------- */

/* Generation g of the replaced file: gen_size(g) bytes, all equal to g, so any mix of two
 * generations or any prefix is detected. */
enum { GENERATIONS = 24 };
static size_t gen_size(int g)
{
    return 8192 * (size_t) g + 7 * (size_t) g + 1;
}

struct reader {
    const char *path;
    ct_sem_t first_read;
    int done; /* atomic */
    long reads;
    int bad;
    size_t bad_len;
    int bad_gen;
};

static int check_generation(const char *buf, size_t len)
{
    if (len == 0)
        return -1;
    int g = (unsigned char) buf[0];
    if (len != gen_size(g))
        return -1;
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (char) g)
            return -1;
    return g;
}

static void *reader_thread(void *arg)
{
    struct reader *r = arg;
    for (;;) {
        bool last = __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
        size_t len;
        char *buf = slurp(r->path, &len);
        if (!buf || check_generation(buf, len) < 0) {
            r->bad++;
            r->bad_len = buf ? len : (size_t) -1;
            r->bad_gen = buf && len ? (unsigned char) buf[0] : -1;
        }
        free(buf);
        if (r->reads++ == 0)
            ct_sem_post(&r->first_read);
        if (last)
            return NULL;
    }
}

static void write_generation(const char *path, int g, int flags)
{
    size_t len = gen_size(g);
    char *buf = xmalloc(len);
    memset(buf, g, len);
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, path, 0644, flags));
    int old = open(path, O_RDONLY | O_CLOEXEC); /* opened before the commit */
    size_t off = 0, step = 1000 + (size_t) g;
    for (int n = 0; off < len; n++) {
        size_t k = len - off < step ? len - off : step;
        assert_int_equal((ssize_t) k, ct_file_write(f, buf + off, k, NULL));
        off += k;
        if (old >= 0 && n % 16 == 0) {
            /* Until the commit, the final name still holds the previous generation. */
            size_t got;
            char *prev = slurp(path, &got);
            assert_non_null(prev);
            assert_int_equal(g - 1, check_generation(prev, got));
            free(prev);
        }
    }
    assert_int_equal(0, ct_file_commit(f, NULL));
    ct_file_free(f);
    if (old >= 0) {
        /* A reader that opened the old file keeps reading all of it. */
        size_t got;
        char *prev = slurp_fd(old, &got);
        assert_int_equal(g - 1, check_generation(prev, got));
        free(prev);
        close(old);
    }
    free(buf);
}

static void test_replacing_an_existing_file_is_atomic(void **state)
{
    const char *dir = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/replaced.bin", dir);
    write_generation(path, 1, 0);

    struct reader r = {.path = path};
    ct_sem_init(&r.first_read, 0);
    ct_test_thread_t *th = ct_test_thread_start(reader_thread, &r);
    assert_int_equal(0, ct_sem_wait(&r.first_read, NULL, -1));
    for (int g = 2; g <= GENERATIONS; g++)
        write_generation(path, g, modes[g % 2]);
    __atomic_store_n(&r.done, 1, __ATOMIC_RELEASE);
    ct_test_thread_join(th);
    ct_sem_destroy(&r.first_read);

    if (r.bad)
        fail_msg("%d of %ld reads saw a partial file (last: %zd bytes starting with %d)", r.bad,
                 r.reads, (ssize_t) r.bad_len, r.bad_gen);
    assert_true(r.reads >= 2);
    size_t len;
    char *buf = slurp(path, &len);
    assert_int_equal(GENERATIONS, check_generation(buf, len));
    free(buf);
    assert_string_equal("replaced.bin", listing(dir));
}

/* ---- cancellation -------------------------------------------------------------------------- */

static void test_canceled_token_stops_writing_and_removes_the_temporary(void **state)
{
    const char *dir = *state;
    char *big = xmalloc(3 * MIB);
    fill(big, 3 * MIB, 3);
    for (int m = 0; m < 2; m++) {
        for (int replace = 0; replace < 2; replace++) {
            if (replace)
                put(at(dir, "out.bin"), "old content", 11);
            ct_source_t *req = new_source();
            const ct_token_t *tok = ct_source_token(req);
            ct_file_t *f;
            assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, modes[m]));
            assert_int_equal(4096, ct_file_write(f, big, 4096, tok));
            ct_source_cancel(req, CT_CLIENT_ABORTED, "client went away");

            assert_int_equal(-ECANCELED, ct_file_write(f, big, 3 * MIB, tok));
            /* The temporary is gone as soon as the write returns, before any free. */
            assert_string_equal(replace ? "out.bin" : "", listing(dir));
            /* The failure is final, whatever token comes next. */
            assert_int_equal(-ECANCELED, ct_file_write(f, big, 10, NULL));
            assert_int_equal(-ECANCELED, ct_file_commit(f, NULL));
            ct_file_free(f);

            if (replace) {
                assert_content(at(dir, "out.bin"), "old content", 11);
                assert_int_equal(0, unlink(at(dir, "out.bin")));
            }
            assert_string_equal("", listing(dir));
            ct_source_free(req);
        }
    }
    free(big);
}

static void test_canceled_token_writes_nothing_even_for_an_empty_write(void **state)
{
    const char *dir = *state;
    ct_source_t *req = new_source();
    ct_source_cancel(req, CT_TIMEOUT, NULL);
    for (int m = 0; m < 2; m++) {
        ct_file_t *f;
        assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, modes[m]));
        assert_int_equal(-ECANCELED, ct_file_write(f, "", 0, ct_source_token(req)));
        assert_string_equal("", listing(dir));
        ct_file_free(f);
    }
    ct_source_free(req);
}

static void test_token_fired_before_commit_publishes_nothing(void **state)
{
    const char *dir = *state;
    for (int m = 0; m < 2; m++) {
        put(at(dir, "out.bin"), "old", 3);
        ct_source_t *req = new_source();
        ct_file_t *f;
        assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, modes[m]));
        assert_int_equal(3, ct_file_write(f, "new", 3, ct_source_token(req)));
        ct_source_cancel(req, CT_SHUTDOWN, NULL);
        assert_int_equal(-ECANCELED, ct_file_commit(f, ct_source_token(req)));
        assert_string_equal("out.bin", listing(dir));
        assert_content(at(dir, "out.bin"), "old", 3);
        assert_int_equal(-ECANCELED, ct_file_commit(f, NULL));
        ct_file_free(f);
        assert_content(at(dir, "out.bin"), "old", 3);
        ct_source_free(req);
    }
}

static void test_commit_under_a_shield_completes_after_the_request_is_canceled(void **state)
{
    const char *dir = *state;
    ct_source_t *req = new_source(), *shield;
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, at(dir, "ledger"), 0644, 0));
    assert_int_equal(5, ct_file_write(f, "entry", 5, ct_source_token(req)));
    /* Point of no return: the commit runs under a shield with its own hard deadline. */
    assert_int_equal(0, ct_source_new_shield(&shield, 60000));
    ct_source_cancel(req, CT_CLIENT_ABORTED, NULL);
    assert_int_equal(0, ct_file_commit(f, ct_source_token(shield)));
    ct_file_free(f);
    ct_source_free(shield);
    ct_source_free(req);
    ct_timers_stop();
    assert_content(at(dir, "ledger"), "entry", 5);
}

static void test_free_without_commit_removes_the_temporary(void **state)
{
    const char *dir = *state;
    put(at(dir, "out.bin"), "old", 3);
    for (int m = 0; m < 2; m++) {
        ct_file_t *f;
        assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, modes[m]));
        assert_int_equal(4, ct_file_write(f, "half", 4, NULL));
        ct_file_free(f);
        assert_string_equal("out.bin", listing(dir));
        assert_content(at(dir, "out.bin"), "old", 3);
    }
    ct_file_free(NULL);
}

/* ---- the cookbook (docs/cookbook/file-write-with-cleanup.md) ------------------------------- */

static ct_source_t *cookbook_client; /* the "client" of the request, canceled by fill_chunk */
static int cookbook_cancel_at = -1;

static void fill_chunk(char *chunk, size_t len, int i)
{
    fill(chunk, len, (unsigned) i);
    if (i == cookbook_cancel_at)
        ct_source_cancel(cookbook_client, CT_CLIENT_ABORTED, "client closed the connection");
}

/* Word for word the function of the cookbook page. */
static int write_large_file(const char *path, int size_mb, int chunk_ms, const ct_token_t *tok)
{
    enum { CHUNK = 1024 * 1024 };
    char *chunk = malloc(CHUNK);
    if (!chunk)
        return -ENOMEM;
    ct_file_t *f = NULL;
    int rc = ct_file_new(&f, path, 0644, 0);
    if (rc < 0)
        goto out;
    for (int i = 0; i < size_mb; i++) {
        fill_chunk(chunk, CHUNK, i); /* produce the next MiB of the report */
        ssize_t n = ct_file_write(f, chunk, CHUNK, tok);
        if (n < 0) {
            rc = (int) n;
            goto out;
        }
        if ((rc = ct_sleep_ms(chunk_ms, tok)) < 0) /* simulated work per chunk */
            goto out;
    }
    rc = ct_file_commit(f, tok);
out:
    ct_file_free(f); /* after a failure: removes the temporary */
    free(chunk);
    return rc;
}

static void test_cookbook_canceled_request_leaves_nothing_behind(void **state)
{
    const char *dir = *state;
    int fds = count_fds();
    cookbook_client = new_source();
    cookbook_cancel_at = 3; /* the client leaves while the 4th MiB is being produced */
    assert_int_equal(-ECANCELED, write_large_file(at(dir, "report.bin"), 25, 0,
                                                  ct_source_token(cookbook_client)));
    assert_string_equal("", listing(dir));
    assert_int_equal(fds, count_fds());
    ct_source_free(cookbook_client);

    cookbook_client = new_source();
    cookbook_cancel_at = -1;
    assert_int_equal(
        0, write_large_file(at(dir, "report.bin"), 4, 0, ct_source_token(cookbook_client)));
    struct stat st;
    assert_int_equal(0, stat(at(dir, "report.bin"), &st));
    assert_int_equal(4 * MIB, st.st_size);
    assert_string_equal("report.bin", listing(dir));
    ct_source_free(cookbook_client);
}

/* ---- killed writers and the sweep ---------------------------------------------------------- */

struct child {
    pid_t pid;
    int ready; /* the child writes one byte here once it has written its chunks */
    int hold;  /* the child blocks reading this; 'c' makes it commit, EOF makes it free */
};

enum { CHUNKS = 3 };

/* Fork a writer that writes CHUNKS MiB to `path`, says so, and blocks. */
static struct child start_writer(const char *path, int flags)
{
    int ready[2], hold[2];
    assert_int_equal(0, pipe2(ready, O_CLOEXEC));
    assert_int_equal(0, pipe2(hold, O_CLOEXEC));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child: no cmocka here, only exit codes the parent reports. */
        close(ready[0]);
        close(hold[1]);
        static char chunk[MIB];
        memset(chunk, 'k', sizeof(chunk));
        ct_file_t *f;
        if (ct_file_new(&f, path, 0644, flags) < 0)
            _exit(10);
        for (int i = 0; i < CHUNKS; i++)
            if (ct_file_write(f, chunk, sizeof(chunk), NULL) != (ssize_t) sizeof(chunk))
                _exit(11);
        if (write(ready[1], "r", 1) != 1)
            _exit(12);
        char c;
        ssize_t n = read(hold[0], &c, 1); /* blocks here until the parent decides */
        if (n == 1 && c == 'c' && ct_file_commit(f, NULL) < 0)
            _exit(13);
        ct_file_free(f);
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    char c;
    ssize_t n = read(ready[0], &c, 1);
    if (n != 1) {
        int status = 0;
        waitpid(pid, &status, 0);
        fail_msg("the writer did not get ready (exit status %d)", WEXITSTATUS(status));
    }
    return (struct child){pid, ready[0], hold[1]};
}

static void kill_writer(struct child *c)
{
    int status;
    assert_int_equal(0, kill(c->pid, SIGKILL));
    assert_int_equal(c->pid, waitpid(c->pid, &status, 0));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(SIGKILL, WTERMSIG(status));
    close(c->ready);
    close(c->hold);
}

static void finish_writer(struct child *c, bool commit)
{
    int status;
    if (commit)
        assert_int_equal(1, write(c->hold, "c", 1));
    close(c->hold);
    assert_int_equal(c->pid, waitpid(c->pid, &status, 0));
    assert_true(WIFEXITED(status));
    assert_int_equal(0, WEXITSTATUS(status));
    close(c->ready);
}

/* Files the sweep must leave alone, next to the writers' temporaries. */
static void make_bystanders(const char *dir)
{
    put(at(dir, "keep.txt"), "keep", 4);
    put(at(dir, ".hidden"), "h", 1);
    put(at(dir, "report.bin.tmp"), "t", 1);
    put(at(dir, ".ct-tmp.0123456789abcdef"), "no final name", 13);
    put(at(dir, ".ct-tmp.0123456789ABCDEF.x"), "upper-case hex", 14);
    put(at(dir, ".ct-tmp.0123456789abcdeg.x"), "not hex", 7);
    put(at(dir, ".ct-tmp.0123456789abcde.x"), "15 digits", 9);
    put(at(dir, "ct-tmp.0123456789abcdef.x"), "no dot", 6);
    assert_int_equal(0, mkdir(at(dir, ".ct-tmp.0123456789abcdef.dir"), 0755));
    assert_int_equal(0, symlink("keep.txt", at(dir, ".ct-tmp.0123456789abcdef.link")));
    assert_int_equal(0, mkfifo(at(dir, ".ct-tmp.0123456789abcdef.fifo"), 0644));
}

#define BYSTANDERS                                                                                 \
    ".ct-tmp.0123456789ABCDEF.x .ct-tmp.0123456789abcde.x .ct-tmp.0123456789abcdef "               \
    ".ct-tmp.0123456789abcdef.dir .ct-tmp.0123456789abcdef.fifo .ct-tmp.0123456789abcdef.link "    \
    ".ct-tmp.0123456789abcdeg.x .hidden ct-tmp.0123456789abcdef.x keep.txt report.bin.tmp"
#define BYSTANDERS_WITH_REPORT                                                                     \
    ".ct-tmp.0123456789ABCDEF.x .ct-tmp.0123456789abcde.x .ct-tmp.0123456789abcdef "               \
    ".ct-tmp.0123456789abcdef.dir .ct-tmp.0123456789abcdef.fifo .ct-tmp.0123456789abcdef.link "    \
    ".ct-tmp.0123456789abcdeg.x .hidden ct-tmp.0123456789abcdef.x keep.txt report.bin "            \
    "report.bin.tmp"

static void assert_bystanders_intact(const char *dir)
{
    assert_content(at(dir, "keep.txt"), "keep", 4);
    assert_content(at(dir, ".ct-tmp.0123456789abcdef"), "no final name", 13);
    assert_content(at(dir, ".ct-tmp.0123456789abcdef.link"), "keep", 4);
}

/* The size of the unlinked regular file (O_TMPFILE) the process `pid` has open, or -1. */
static off_t unnamed_file_size(pid_t pid)
{
    char fddir[64];
    snprintf(fddir, sizeof(fddir), "/proc/%d/fd", (int) pid);
    DIR *d = opendir(fddir);
    assert_non_null(d);
    off_t size = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", fddir, e->d_name);
        if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0)
            size = st.st_size;
    }
    closedir(d);
    return size;
}

static void test_sigkill_mid_write_leaves_nothing_under_the_final_name(void **state)
{
    const char *dir = *state;
    make_bystanders(dir);
    struct child c = start_writer(at(dir, "report.bin"), 0);
    /* Mid-write: CHUNKS MiB are in the temporary, and no new name is in the directory. */
    if (tmpfile_supported(dir)) {
        assert_int_equal((off_t) (CHUNKS * MIB), unnamed_file_size(c.pid));
        assert_string_equal(BYSTANDERS, listing(dir));
    }
    kill_writer(&c);
    assert_false(exists(at(dir, "report.bin")));
    /* With O_TMPFILE there is nothing to sweep; without it, the named temporary goes. */
    int removed = ct_file_sweep(dir, NULL);
    assert_int_equal(tmpfile_supported(dir) ? 0 : 1, removed);
    assert_string_equal(BYSTANDERS, listing(dir));
    assert_bystanders_intact(dir);
}

static void test_sigkill_mid_write_leaves_a_temporary_that_the_sweep_removes(void **state)
{
    const char *dir = *state;
    make_bystanders(dir);
    put(at(dir, "report.bin"), "old report", 10);
    struct child c = start_writer(at(dir, "report.bin"), CT_FILE_NAMED_TEMP);
    char tmp[NAME_MAX + 1];
    assert_non_null(find_temp(dir, "report.bin", tmp));
    struct stat st;
    assert_int_equal(0, stat(at(dir, tmp), &st));
    assert_int_equal((off_t) (CHUNKS * MIB), st.st_size);
    kill_writer(&c);

    /* The final name still holds the old report; the dead writer's temporary is left over. */
    assert_content(at(dir, "report.bin"), "old report", 10);
    assert_true(exists(at(dir, tmp)));
    assert_int_equal(1, ct_file_sweep(dir, NULL));
    assert_false(exists(at(dir, tmp)));
    assert_string_equal(BYSTANDERS_WITH_REPORT, listing(dir));
    assert_bystanders_intact(dir);
    assert_content(at(dir, "report.bin"), "old report", 10);
    assert_int_equal(0, ct_file_sweep(dir, NULL));
}

static void test_sweep_leaves_a_live_writers_temporary_alone(void **state)
{
    const char *dir = *state;
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, at(dir, "live.bin"), 0644, CT_FILE_NAMED_TEMP));
    assert_int_equal(4, ct_file_write(f, "live", 4, NULL));
    char tmp[NAME_MAX + 1];
    assert_non_null(find_temp(dir, "live.bin", tmp));
    /* Same process, other open file description: the flock conflicts, so nothing goes. */
    assert_int_equal(0, ct_file_sweep(dir, NULL));
    assert_true(exists(at(dir, tmp)));
    assert_int_equal(4, ct_file_write(f, "more", 4, NULL));
    assert_int_equal(0, ct_file_commit(f, NULL));
    ct_file_free(f);
    assert_content(at(dir, "live.bin"), "livemore", 8);
    assert_string_equal("live.bin", listing(dir));

    /* A temporary whose writer exited without freeing it (no lock any more) is swept. */
    put(at(dir, ".ct-tmp.00000000deadbeef.live.bin"), "x", 1);
    assert_int_equal(1, ct_file_sweep(dir, NULL));
    assert_string_equal("live.bin", listing(dir));
}

static void test_sweep_leaves_the_temporary_of_a_live_writer_in_another_process_alone(void **state)
{
    const char *dir = *state;
    struct child c = start_writer(at(dir, "report.bin"), CT_FILE_NAMED_TEMP);
    char tmp[NAME_MAX + 1];
    assert_non_null(find_temp(dir, "report.bin", tmp));
    assert_int_equal(0, ct_file_sweep(dir, NULL));
    assert_true(exists(at(dir, tmp)));
    /* The writer goes on and publishes all of its data. */
    finish_writer(&c, true);
    struct stat st;
    assert_int_equal(0, stat(at(dir, "report.bin"), &st));
    assert_int_equal((off_t) (CHUNKS * MIB), st.st_size);
    assert_string_equal("report.bin", listing(dir));

    /* A writer that gives up (free without commit) leaves nothing for the sweep either. */
    c = start_writer(at(dir, "other.bin"), CT_FILE_NAMED_TEMP);
    assert_int_equal(0, ct_file_sweep(dir, NULL));
    finish_writer(&c, false);
    assert_string_equal("report.bin", listing(dir));
}

/* The instant between a writer creating its named temporary and locking it, frozen: the test is
 * that writer, holding the directory's shared creation lock with an unlocked temporary. */
static void test_sweep_leaves_a_temporary_that_is_being_created_alone(void **state)
{
    const char *dir = *state;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dirfd >= 0);
    assert_int_equal(0, flock(dirfd, LOCK_SH));
    put(at(dir, ".ct-tmp.0123456789abcdef.new.bin"), "", 0);
    assert_int_equal(0, ct_file_sweep(dir, NULL));
    assert_string_equal(".ct-tmp.0123456789abcdef.new.bin", listing(dir));
    /* Other writers may create files meanwhile: the lock is shared. */
    publish(at(dir, "other.bin"), 0644, CT_FILE_NAMED_TEMP, "other");
    /* Had the writer died right there, the kernel would drop its locks: then the file goes. */
    assert_int_equal(0, flock(dirfd, LOCK_UN));
    assert_int_equal(1, ct_file_sweep(dir, NULL));
    assert_string_equal("other.bin", listing(dir));
    close(dirfd);
}

static void test_sweep_removes_only_dead_temporaries_among_other_files(void **state)
{
    const char *dir = *state;
    make_bystanders(dir);
    put(at(dir, ".ct-tmp.fedcba9876543210.report.bin"), "dead", 4);
    put(at(dir, ".ct-tmp.0000000000000001.x"), "dead too", 8);
    /* The FIFO is there to show that the sweep does not open it (that would block). */
    assert_int_equal(2, ct_file_sweep(dir, NULL));
    assert_string_equal(BYSTANDERS, listing(dir));
    assert_bystanders_intact(dir);
    assert_int_equal(0, ct_file_sweep(dir, NULL));
}

static void test_sweep_stops_when_the_token_has_fired(void **state)
{
    const char *dir = *state;
    put(at(dir, ".ct-tmp.fedcba9876543210.report.bin"), "dead", 4);
    ct_source_t *s = new_source();
    ct_source_cancel(s, CT_SHUTDOWN, NULL);
    assert_int_equal(-ECANCELED, ct_file_sweep(dir, ct_source_token(s)));
    assert_string_equal(".ct-tmp.fedcba9876543210.report.bin", listing(dir));
    ct_source_free(s);
}

/* Writers in threads publish files while a sweeper sweeps the same directory in a loop. Each
 * writer waits, with its first temporary live, until the sweeper has swept once, so at least one
 * sweep meets live temporaries; after that they race freely. A sweep that removed a live
 * temporary would make that writer's rename fail with ENOENT. */
enum { WRITERS = 3, FILES_EACH = 15 };

struct sweep_race {
    const char *dir;
    ct_sem_t temps_live, swept;
    int done; /* atomic */
    long sweeps;
    int sweep_bad, sweep_rc;
};

struct race_writer {
    struct sweep_race *race;
    int id;
    int failures, last_rc;
};

static void *race_writer_thread(void *arg)
{
    struct race_writer *w = arg;
    char path[PATH_MAX], text[64];
    for (int i = 0; i < FILES_EACH; i++) {
        snprintf(path, sizeof(path), "%s/w%d-%02d", w->race->dir, w->id, i);
        int len = snprintf(text, sizeof(text), "writer %d file %d", w->id, i);
        ct_file_t *f = NULL;
        int rc = ct_file_new(&f, path, 0644, CT_FILE_NAMED_TEMP);
        if (rc == 0)
            rc = (int) ct_file_write(f, text, (size_t) len, NULL);
        if (i == 0) {
            ct_sem_post(&w->race->temps_live);
            ct_sem_wait(&w->race->swept, NULL, -1);
        }
        if (rc >= 0)
            rc = ct_file_commit(f, NULL);
        ct_file_free(f);
        if (rc < 0) {
            w->failures++;
            w->last_rc = rc;
        }
    }
    return NULL;
}

static void *race_sweeper_thread(void *arg)
{
    struct sweep_race *r = arg;
    for (int i = 0; i < WRITERS; i++)
        ct_sem_wait(&r->temps_live, NULL, -1);
    int rc = ct_file_sweep(r->dir, NULL);
    if (rc != 0) {
        r->sweep_bad++;
        r->sweep_rc = rc;
    }
    r->sweeps++;
    for (int i = 0; i < WRITERS; i++)
        ct_sem_post(&r->swept);
    while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
        if ((rc = ct_file_sweep(r->dir, NULL)) != 0) {
            r->sweep_bad++;
            r->sweep_rc = rc;
        }
        r->sweeps++;
    }
    return NULL;
}

static void test_concurrent_sweeps_never_remove_live_temporaries(void **state)
{
    const char *dir = *state;
    struct sweep_race r = {.dir = dir};
    ct_sem_init(&r.temps_live, 0);
    ct_sem_init(&r.swept, 0);
    struct race_writer w[WRITERS];
    ct_test_thread_t *th[WRITERS];
    ct_test_thread_t *sweeper = ct_test_thread_start(race_sweeper_thread, &r);
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct race_writer){.race = &r, .id = i};
        th[i] = ct_test_thread_start(race_writer_thread, &w[i]);
    }
    for (int i = 0; i < WRITERS; i++)
        ct_test_thread_join(th[i]);
    __atomic_store_n(&r.done, 1, __ATOMIC_RELEASE);
    ct_test_thread_join(sweeper);
    ct_sem_destroy(&r.temps_live);
    ct_sem_destroy(&r.swept);

    if (r.sweep_bad)
        fail_msg("%d of %ld sweeps returned non-zero (last %d)", r.sweep_bad, r.sweeps, r.sweep_rc);
    for (int i = 0; i < WRITERS; i++) {
        if (w[i].failures)
            fail_msg("writer %d: %d failures (last %s)", i, w[i].failures,
                     ct_strerror(w[i].last_rc));
        for (int k = 0; k < FILES_EACH; k++) {
            char name[64], text[64];
            snprintf(name, sizeof(name), "w%d-%02d", i, k);
            int len = snprintf(text, sizeof(text), "writer %d file %d", i, k);
            assert_content(at(dir, name), text, (size_t) len);
        }
    }
    assert_null(strstr(listing(dir), ".ct-tmp."));
}

/* ---- failures ------------------------------------------------------------------------------ */

struct alloc_run {
    const char *dir;
    int flags, fds;
};

static int alloc_scenario(void *arg)
{
    struct alloc_run *r = arg;
    ct_file_t *f = (ct_file_t *) 1;
    int rc = ct_file_new(&f, at(r->dir, "out.bin"), 0644, r->flags);
    if (rc < 0) {
        assert_null(f);
        return rc;
    }
    ssize_t n = ct_file_write(f, "payload", 7, NULL);
    rc = n < 0 ? (int) n : ct_file_commit(f, NULL);
    ct_file_free(f);
    if (rc < 0)
        return rc;
    rc = ct_file_sweep(r->dir, NULL);
    return rc < 0 ? rc : 0;
}

/* After each run: no descriptor left open, and the directory holds the file or nothing. */
static void alloc_check(void *arg, int rc)
{
    struct alloc_run *r = arg;
    assert_int_equal(r->fds, count_fds());
    if (rc == 0) {
        assert_string_equal("out.bin", listing(r->dir));
        assert_content(at(r->dir, "out.bin"), "payload", 7);
        assert_int_equal(0, unlink(at(r->dir, "out.bin")));
    } else {
        assert_string_equal("", listing(r->dir));
    }
}

static void test_every_allocation_failure_returns_enomem_and_leaks_nothing(void **state)
{
    for (int m = 0; m < 2; m++) {
        struct alloc_run r = {*state, modes[m], count_fds()};
        assert_true(ct_test_alloc_torture(alloc_scenario, alloc_check, &r) >= 1); /* one per file */
    }
}

static void test_no_descriptor_leaks_and_every_descriptor_is_close_on_exec(void **state)
{
    const char *dir = *state;
    int before[1024], n_before = count_fds();
    for (int fd = 0; fd < 1024; fd++)
        before[fd] = fcntl(fd, F_GETFD) >= 0;
    for (int m = 0; m < 2; m++) {
        ct_file_t *f;
        assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, modes[m]));
        assert_int_equal(3, ct_file_write(f, "abc", 3, NULL));
        int opened = 0;
        for (int fd = 0; fd < 1024; fd++) {
            int fl = fcntl(fd, F_GETFD);
            if (fl >= 0 && !before[fd]) {
                opened++;
                assert_true(fl & FD_CLOEXEC);
            }
        }
        assert_int_equal(2, opened); /* the temporary and its directory */
        assert_int_equal(0, ct_file_commit(f, NULL));
        assert_int_equal(n_before, count_fds()); /* commit closes both */
        ct_file_free(f);
        assert_int_equal(n_before, count_fds());
    }
    /* Every way out of a file and of a sweep closes what it opened. */
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, 0));
    ct_file_free(f);
    assert_int_equal(-ENOENT, ct_file_new(&f, at(dir, "no/out.bin"), 0644, 0));
    assert_int_equal(-EISDIR, ct_file_new(&f, dir, 0644, 0));
    assert_int_equal(0, ct_file_sweep(dir, NULL));
    assert_int_equal(n_before, count_fds());
}

static void test_bad_arguments_return_einval(void **state)
{
    const char *dir = *state;
    ct_file_t *f = (ct_file_t *) 1;
    assert_int_equal(-EINVAL, ct_file_new(NULL, at(dir, "x"), 0644, 0));
    assert_int_equal(-EINVAL, ct_file_new(&f, NULL, 0644, 0));
    assert_null(f);
    assert_int_equal(-EINVAL, ct_file_new(&f, "", 0644, 0));
    assert_int_equal(-EINVAL, ct_file_new(&f, at(dir, ""), 0644, 0)); /* ends in '/' */
    assert_int_equal(-EINVAL, ct_file_new(&f, at(dir, "."), 0644, 0));
    assert_int_equal(-EINVAL, ct_file_new(&f, at(dir, ".."), 0644, 0));
    assert_int_equal(-EINVAL, ct_file_new(&f, at(dir, ".ct-tmp.0123456789abcdef.x"), 0644, 0));
    assert_int_equal(-EINVAL, ct_file_new(&f, at(dir, "x"), 010644, 0));
    assert_int_equal(-EINVAL, ct_file_new(&f, at(dir, "x"), 0644, 2));
    assert_int_equal(-EINVAL, ct_file_new(&f, at(dir, "x"), 0644, -1));
    char *longpath = xmalloc(PATH_MAX + 10);
    memset(longpath, 'a', PATH_MAX + 9);
    longpath[PATH_MAX + 9] = '\0';
    assert_int_equal(-ENAMETOOLONG, ct_file_new(&f, longpath, 0644, 0));
    free(longpath);
    assert_string_equal("", listing(dir));

    assert_int_equal(-EINVAL, ct_file_write(NULL, "x", 1, NULL));
    assert_int_equal(-EINVAL, ct_file_commit(NULL, NULL));
    assert_int_equal(-EINVAL, ct_file_sweep(NULL, NULL));

    assert_int_equal(0, ct_file_new(&f, at(dir, "x"), 0644, 0));
    assert_int_equal(-EINVAL, ct_file_write(f, NULL, 1, NULL));
    assert_int_equal(-EINVAL, ct_file_write(f, "x", (size_t) SSIZE_MAX + 1, NULL));
    /* Bad arguments do not spoil the file. */
    assert_int_equal(0, ct_file_write(f, NULL, 0, NULL));
    assert_int_equal(1, ct_file_write(f, "x", 1, NULL));
    assert_int_equal(0, ct_file_commit(f, NULL));
    ct_file_free(f);
    assert_content(at(dir, "x"), "x", 1);
}

static void test_missing_directory_returns_enoent(void **state)
{
    const char *dir = *state;
    ct_file_t *f = (ct_file_t *) 1;
    assert_int_equal(-ENOENT, ct_file_new(&f, at(dir, "missing/out.bin"), 0644, 0));
    assert_null(f);
    assert_int_equal(-ENOENT,
                     ct_file_new(&f, at(dir, "missing/out.bin"), 0644, CT_FILE_NAMED_TEMP));
    assert_int_equal(-ENOENT, ct_file_sweep(at(dir, "missing"), NULL));
    put(at(dir, "plain"), "p", 1);
    assert_int_equal(-ENOTDIR, ct_file_new(&f, at(dir, "plain/out.bin"), 0644, 0));
    assert_int_equal(-ENOTDIR, ct_file_sweep(at(dir, "plain"), NULL));
    assert_string_equal("plain", listing(dir));
}

static void test_directory_removed_before_commit_returns_enoent(void **state)
{
    const char *dir = *state;
    if (!tmpfile_supported(dir))
        skip(); /* a named temporary keeps the directory from being removed */
    assert_int_equal(0, mkdir(at(dir, "sub"), 0755));
    ct_file_t *f;
    assert_int_equal(0, ct_file_new(&f, at(dir, "sub/out.bin"), 0644, 0));
    assert_int_equal(4, ct_file_write(f, "data", 4, NULL));
    assert_int_equal(0, rmdir(at(dir, "sub")));
    assert_int_equal(-ENOENT, ct_file_commit(f, NULL));
    assert_int_equal(-ENOENT, ct_file_commit(f, NULL));
    ct_file_free(f);
    assert_string_equal("", listing(dir));
}

static void test_final_name_that_is_a_directory_returns_eisdir(void **state)
{
    const char *dir = *state;
    assert_int_equal(0, mkdir(at(dir, "d"), 0755));
    ct_file_t *f;
    assert_int_equal(-EISDIR, ct_file_new(&f, at(dir, "d"), 0644, 0));
    assert_int_equal(0, rmdir(at(dir, "d")));
    for (int m = 0; m < 2; m++) {
        /* It became a directory while the file was written: the rename refuses. */
        assert_int_equal(0, ct_file_new(&f, at(dir, "d"), 0644, modes[m]));
        assert_int_equal(4, ct_file_write(f, "data", 4, NULL));
        assert_int_equal(0, mkdir(at(dir, "d"), 0755));
        assert_int_equal(-EISDIR, ct_file_commit(f, NULL));
        ct_file_free(f);
        assert_string_equal("d", listing(dir));
        assert_int_equal(0, rmdir(at(dir, "d")));
    }
}

/* A write that fails half-way (here: the file size limit, like a full disk) fails the file:
 * what was written is removed, the final name is untouched, and every later call says so. */
static void test_write_error_fails_the_file_and_publishes_nothing(void **state)
{
    const char *dir = *state;
    char *big = xmalloc(3 * MIB);
    fill(big, 3 * MIB, 1);
    put(at(dir, "out.bin"), "old", 3);
    struct rlimit old, lim;
    assert_int_equal(0, getrlimit(RLIMIT_FSIZE, &old));
    lim = (struct rlimit){MIB + 100, old.rlim_max};
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(0, setrlimit(RLIMIT_FSIZE, &lim));
    for (int m = 0; m < 2; m++) {
        ct_file_t *f;
        assert_int_equal(0, ct_file_new(&f, at(dir, "out.bin"), 0644, modes[m]));
        /* 1 MiB goes in whole, the next write(2) is short (100 bytes), the one after fails. */
        assert_int_equal(-EFBIG, ct_file_write(f, big, 3 * MIB, NULL));
        assert_string_equal("out.bin", listing(dir));
        assert_int_equal(-EFBIG, ct_file_write(f, "x", 1, NULL));
        assert_int_equal(-EFBIG, ct_file_commit(f, NULL));
        ct_file_free(f);
        assert_content(at(dir, "out.bin"), "old", 3);
    }
    assert_int_equal(0, setrlimit(RLIMIT_FSIZE, &old));
    signal(SIGXFSZ, SIG_DFL);
    free(big);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup_dir, remove_dir)

CT_TEST_MAIN(T(test_commit_publishes_the_exact_bytes_and_leaves_no_temporary),
             T(test_empty_file_is_published),
             T(test_named_temporary_is_visible_while_writing_and_gone_after_commit),
             T(test_unnamed_temporary_leaves_no_name_while_writing),
             T(test_commit_applies_mode_and_umask),
             T(test_relative_path_is_resolved_when_the_file_is_created),
             T(test_longest_final_name_is_cut_in_the_temporary_name),
             T(test_commit_twice_or_write_after_commit_returns_einval),
             T(test_replacing_an_existing_file_is_atomic),
             T(test_canceled_token_stops_writing_and_removes_the_temporary),
             T(test_canceled_token_writes_nothing_even_for_an_empty_write),
             T(test_token_fired_before_commit_publishes_nothing),
             T(test_commit_under_a_shield_completes_after_the_request_is_canceled),
             T(test_free_without_commit_removes_the_temporary),
             T(test_cookbook_canceled_request_leaves_nothing_behind),
             T(test_sigkill_mid_write_leaves_nothing_under_the_final_name),
             T(test_sigkill_mid_write_leaves_a_temporary_that_the_sweep_removes),
             T(test_sweep_leaves_a_live_writers_temporary_alone),
             T(test_sweep_leaves_the_temporary_of_a_live_writer_in_another_process_alone),
             T(test_sweep_leaves_a_temporary_that_is_being_created_alone),
             T(test_sweep_removes_only_dead_temporaries_among_other_files),
             T(test_sweep_stops_when_the_token_has_fired),
             T(test_concurrent_sweeps_never_remove_live_temporaries),
             T(test_every_allocation_failure_returns_enomem_and_leaks_nothing),
             T(test_no_descriptor_leaks_and_every_descriptor_is_close_on_exec),
             T(test_bad_arguments_return_einval), T(test_missing_directory_returns_enoent),
             T(test_directory_removed_before_commit_returns_enoent),
             T(test_final_name_that_is_a_directory_returns_eisdir),
             T(test_write_error_fails_the_file_and_publishes_nothing))
