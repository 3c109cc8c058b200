/* Cancel-safe file output on a real file system, each test in its own directory under /tmp:
 * publishing, replacing, cancellation, failures. Killed writers and the sweep are in
 * test_file_sweep.c. Nothing here sleeps to synchronise. */
#define _GNU_SOURCE
#include "file_util.h"

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
            size_t got = 0;
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
    size_t len = 0;
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
             T(test_every_allocation_failure_returns_enomem_and_leaks_nothing),
             T(test_no_descriptor_leaks_and_every_descriptor_is_close_on_exec),
             T(test_bad_arguments_return_einval), T(test_missing_directory_returns_enoent),
             T(test_directory_removed_before_commit_returns_enoent),
             T(test_final_name_that_is_a_directory_returns_eisdir),
             T(test_write_error_fails_the_file_and_publishes_nothing))
