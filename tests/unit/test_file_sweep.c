/* Cancel-safe file output: writers killed with SIGKILL mid-write leave nothing under the final
 * name, and the sweep removes what they leave without ever touching a live writer's temporary.
 * Processes that must be killed are lined up with pipes: the child reports after N chunks and
 * blocks; the parent looks, then kills it. Nothing here sleeps to synchronise. */
#define _GNU_SOURCE
#include "file_util.h"

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

CT_TEST_MAIN(T(test_sigkill_mid_write_leaves_nothing_under_the_final_name),
             T(test_sigkill_mid_write_leaves_a_temporary_that_the_sweep_removes),
             T(test_sweep_leaves_a_live_writers_temporary_alone),
             T(test_sweep_leaves_the_temporary_of_a_live_writer_in_another_process_alone),
             T(test_sweep_leaves_a_temporary_that_is_being_created_alone),
             T(test_sweep_removes_only_dead_temporaries_among_other_files),
             T(test_sweep_stops_when_the_token_has_fired),
             T(test_concurrent_sweeps_never_remove_live_temporaries))
