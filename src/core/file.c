/* Cancel-safe file output: a temporary in the target's directory, fsync, rename, fsync.
 *
 * The final name only ever changes through one renameat() inside one directory, held open as
 * `dirfd` from ct_file_new() on. rename(2) replaces the name atomically, so a reader opening the
 * final name gets the whole old inode or the whole new one, and because both names live in the
 * same directory the rename cannot fail with EXDEV.
 *
 * Where O_TMPFILE works the data goes to an unnamed inode: if the process dies while writing,
 * the kernel frees it and nothing is left to sweep. Publishing it needs a name to rename from,
 * so the commit links it under a temporary name first (through /proc/self/fd, the unprivileged
 * way open(2) documents) and renames that. Where O_TMPFILE does not work (NFS, FUSE, old
 * kernels) or /proc is missing, the temporary is a named file from the start.
 *
 * Every temporary that has a name is locked with flock(2) by its writer before anybody can
 * mistake it for garbage. flock locks belong to the open file description, not to the process
 * (as POSIX fcntl locks do), so a sweep in the writer's own process conflicts with the writer as
 * it must, and closing the sweep's descriptor does not drop the writer's lock. The kernel releases
 * the lock when the writer's last descriptor goes, whatever killed it: a sweeper that gets the
 * lock without waiting knows the writer is gone.
 *
 * That leaves the instant between creating a named temporary (O_EXCL) and locking it. Writers
 * spend it holding a shared flock on the directory, and the sweeper takes that lock exclusively
 * (without waiting) for each temporary it examines, so it never even sees a temporary in that
 * state. Where directories cannot be locked (NFS emulates flock with fcntl locks, and an
 * exclusive fcntl lock needs a descriptor open for writing) a second rule still holds: the writer
 * checks after locking that its name still points at its file, and if a sweep got there first it
 * makes another — nothing had been written to it yet. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ct/file.h"
#include "internal.h"

/* Most bytes given to one write(2): the token is checked between two of them. */
#define CHUNK ((size_t) 1 << 20)

/* The temporary's name: PREFIX, 16 hex digits, '.', the final name cut to fit NAME_MAX. */
#define PREFIX     ".ct-tmp."
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define HEX_LEN    16
#define STEM_LEN   (PREFIX_LEN + HEX_LEN + 1)

/* Attempts at a fresh random name before giving up with -EEXIST. */
#define NAME_TRIES 64

enum state {
    ST_OPEN,   /* writes go to the temporary */
    ST_FAILED, /* a write or the commit failed: everything is cleaned up, `err` is final */
    ST_DONE    /* committed */
};

struct ct_file {
    int fd;       /* the temporary, -1 once closed */
    int dirfd;    /* the target's directory, -1 once closed */
    int state;    /* enum state */
    int err;      /* ST_FAILED: the code every later call returns */
    bool tmpfile; /* the temporary is an O_TMPFILE inode (named only during the commit) */
    bool named;   /* `tmp` names the temporary and must be removed on failure */
    char tmp[NAME_MAX + 1];
    char base[]; /* the final name, inside dirfd */
};

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_temp_name(const char *name)
{
    if (strncmp(name, PREFIX, PREFIX_LEN) != 0)
        return false;
    for (size_t i = PREFIX_LEN; i < PREFIX_LEN + HEX_LEN; i++)
        if (!is_hex(name[i]))
            return false;
    return name[STEM_LEN - 1] == '.' && name[STEM_LEN] != '\0';
}

/* Random bits for a name. Uniqueness is what matters (O_EXCL and linkat catch collisions);
 * without getrandom() a mix of time, pid, a counter and an address is plenty. */
static uint64_t random_bits(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t) sizeof(r))
        return r;
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r = __atomic_add_fetch(&counter, UINT64_C(0x9e3779b97f4a7c15), __ATOMIC_RELAXED);
    r ^= (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
    r ^= (uint64_t) getpid() << 40 ^ (uint64_t) (uintptr_t) &r;
    r = (r ^ (r >> 30)) * UINT64_C(0xbf58476d1ce4e5b9); /* splitmix64's finaliser */
    r = (r ^ (r >> 27)) * UINT64_C(0x94d049bb133111eb);
    return r ^ (r >> 31);
}

static void make_temp_name(char *out, const char *base)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t r = random_bits();
    memcpy(out, PREFIX, PREFIX_LEN);
    for (size_t i = 0; i < HEX_LEN; i++)
        out[PREFIX_LEN + i] = hex[(r >> (60 - 4 * i)) & 15];
    out[STEM_LEN - 1] = '.';
    size_t n = strlen(base);
    if (n > NAME_MAX - STEM_LEN)
        n = NAME_MAX - STEM_LEN;
    memcpy(out + STEM_LEN, base, n);
    out[STEM_LEN + n] = '\0';
}

/* Does `name` in `dirfd` still refer to the regular file open as `fd`? */
static bool same_file(int dirfd, const char *name, int fd)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && S_ISREG(a.st_mode) &&
           fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* Take the writer's or the sweeper's lock on the file `name` open as `fd`, without waiting.
 * Returns 0 locked, and `name` is still that file; -EAGAIN someone else holds it, or the name
 * went to another file (or none) meanwhile; -ENOLCK and other errors from flock. */
static int lock_file(int dirfd, const char *name, int fd)
{
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        if (errno != EINTR)
            return -errno;
    }
    return same_file(dirfd, name, fd) ? 0 : -EAGAIN;
}

/* ---- creating the temporary ---------------------------------------------------------------- */

/* Can the O_TMPFILE inode open as `fd` be linked through /proc/self/fd at commit? Asked now, so
 * that a machine without /proc falls back to a named temporary before any data is written. */
static bool proc_linkable(int fd)
{
    char proc[32];
    struct stat a, b;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    return fstat(fd, &a) == 0 && stat(proc, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static int create_tmpfile(struct ct_file *f, mode_t mode)
{
    int fd = openat(f->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    /* Nobody else can see this inode yet, so the lock is free; it must be held before the
     * commit gives the inode a name a sweeper could find. */
    if (!proc_linkable(fd) || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return -EOPNOTSUPP;
    }
    f->fd = fd;
    f->tmpfile = true;
    return 0;
}

/* Hold the directory's creation lock (see the top of this file) while a named temporary is made
 * and locked. Returns whether it is held: where directories cannot be locked, go on without. */
static bool dir_lock_shared(int dirfd)
{
    while (flock(dirfd, LOCK_SH) < 0) {
        if (errno != EINTR)
            return false;
    }
    return true;
}

static int create_named(struct ct_file *f, mode_t mode)
{
    bool dir_locked = dir_lock_shared(f->dirfd);
    int rc = -EEXIST;
    for (int tries = 0; tries < NAME_TRIES; tries++) {
        make_temp_name(f->tmp, f->base);
        int fd =
            openat(f->dirfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0) {
            if (errno == EEXIST || errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        /* Without the directory lock, a sweeper may have found this unlocked file between the
         * open and here, locked it and removed it. It then holds the lock, or the name is gone:
         * take another name. */
        rc = lock_file(f->dirfd, f->tmp, fd);
        if (rc == 0) {
            f->fd = fd;
            f->named = true;
            break;
        }
        if (rc != -EAGAIN)
            unlinkat(f->dirfd, f->tmp, 0); /* no lock on this file system: give up */
        close(fd);
        if (rc != -EAGAIN)
            break;
        rc = -EEXIST;
    }
    if (dir_locked)
        flock(f->dirfd, LOCK_UN);
    return rc;
}

/* Split `path` into its directory (written to `dir`) and its last component (returned). */
static int split_path(const char *path, char dir[PATH_MAX], const char **base)
{
    size_t len = strnlen(path, PATH_MAX);
    if (len == 0 || path[len - 1] == '/')
        return -EINVAL;
    if (len == PATH_MAX)
        return -ENAMETOOLONG;
    const char *slash = memrchr(path, '/', len);
    *base = slash ? slash + 1 : path;
    if (strcmp(*base, ".") == 0 || strcmp(*base, "..") == 0 || is_temp_name(*base))
        return -EINVAL;
    if (strlen(*base) > NAME_MAX)
        return -ENAMETOOLONG;
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        memcpy(dir, path, (size_t) (slash - path));
        dir[slash - path] = '\0';
    }
    return 0;
}

int ct_file_new(ct_file_t **out, const char *path, mode_t mode, int flags)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!path || (mode & ~(mode_t) 07777) || (flags & ~CT_FILE_NAMED_TEMP))
        return -EINVAL;
    char dir[PATH_MAX];
    const char *base;
    int rc = split_path(path, dir, &base);
    if (rc < 0)
        return rc;

    size_t blen = strlen(base);
    struct ct_file *f = ct__malloc(sizeof(*f) + blen + 1);
    if (!f)
        return -ENOMEM;
    f->fd = -1;
    f->state = ST_OPEN;
    f->err = 0;
    f->tmpfile = false;
    f->named = false;
    f->tmp[0] = '\0';
    memcpy(f->base, base, blen + 1);

    f->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->dirfd < 0) {
        rc = -errno;
        goto fail;
    }
    /* The rename would refuse a directory anyway; saying so now spares writing the data. */
    struct stat st;
    if (fstatat(f->dirfd, f->base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        goto fail;
    }
    /* Any O_TMPFILE failure falls back to a named temporary: the file systems that lack it
     * answer EOPNOTSUPP, EISDIR or EINVAL depending on kernel and driver, and a real problem
     * (EACCES, ENOSPC, EROFS) shows up again, with its own code, when the named file is made. */
    if ((flags & CT_FILE_NAMED_TEMP) || create_tmpfile(f, mode) < 0) {
        if ((rc = create_named(f, mode)) < 0)
            goto fail;
    }
    *out = f;
    return 0;

fail:
    if (f->dirfd >= 0)
        close(f->dirfd);
    ct__free(f);
    return rc;
}

/* ---- writing, committing, abandoning ------------------------------------------------------- */

/* Remove the temporary (while its lock is still held, so no sweeper is involved) and close
 * everything. The final name is never touched here. */
static void discard(struct ct_file *f)
{
    if (f->named) {
        unlinkat(f->dirfd, f->tmp, 0); /* if this fails, the sweep will find it unlocked */
        f->named = false;
    }
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    if (f->dirfd >= 0) {
        close(f->dirfd);
        f->dirfd = -1;
    }
}

static int fail(struct ct_file *f, int err)
{
    discard(f);
    f->state = ST_FAILED;
    f->err = err;
    return err;
}

/* State check shared by write and commit: 0 to go on, or what to return. */
static int usable(const struct ct_file *f)
{
    if (f->state == ST_FAILED)
        return f->err;
    if (f->state == ST_DONE)
        return -EINVAL;
    return 0;
}

ssize_t ct_file_write(ct_file_t *f, const void *buf, size_t len, const ct_token_t *tok)
{
    if (!f || (!buf && len > 0) || len > SSIZE_MAX)
        return -EINVAL;
    int rc = usable(f);
    if (rc < 0)
        return rc;
    const char *p = buf;
    size_t done = 0;
    for (;;) {
        /* Checked before the loop ends too, so that a canceled token is reported even for an
         * empty write: the caller learns about it at the first call, not at the commit. */
        if (ct_token_canceled(tok))
            return fail(f, -ECANCELED);
        if (done == len)
            return (ssize_t) len;
        size_t n = len - done < CHUNK ? len - done : CHUNK;
        ssize_t w = write(f->fd, p + done, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return fail(f, -errno);
        }
        if (w == 0)
            return fail(f, -EIO); /* a regular file never does this; do not spin on it */
        done += (size_t) w;
    }
}

/* An fsync that reports errors once and never retries after one: after a failed fsync the
 * kernel may have dropped the dirty pages and cleared the error, so a second fsync that
 * "succeeds" proves nothing (the 2018 PostgreSQL fsync discussion). */
static int sync_fd(int fd)
{
    while (fsync(fd) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* Give the O_TMPFILE inode a temporary name to rename from. The /proc path needs no privilege;
 * AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH but works without /proc (mounted away since new). */
static int link_tmpfile(struct ct_file *f)
{
    char proc[32];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
    for (int tries = 0; tries < NAME_TRIES; tries++) {
        make_temp_name(f->tmp, f->base);
        if (linkat(AT_FDCWD, proc, f->dirfd, f->tmp, AT_SYMLINK_FOLLOW) == 0)
            goto linked;
        int err = errno;
        if (err != EEXIST) {
            if (linkat(f->fd, "", f->dirfd, f->tmp, AT_EMPTY_PATH) == 0)
                goto linked;
            if (errno != EEXIST)
                return -err;
        }
    }
    return -EEXIST;
linked:
    f->named = true;
    return 0;
}

int ct_file_commit(ct_file_t *f, const ct_token_t *tok)
{
    if (!f)
        return -EINVAL;
    int rc = usable(f);
    if (rc < 0)
        return rc;
    if (ct_token_canceled(tok))
        return fail(f, -ECANCELED);

    /* Point of no return: the token is not looked at again. Each step below either leaves the
     * final name as it was (and fail() removes the temporary) or is the rename itself. */
    if ((rc = sync_fd(f->fd)) < 0)
        return fail(f, rc);
    if (f->tmpfile && (rc = link_tmpfile(f)) < 0)
        return fail(f, rc);
    if (renameat(f->dirfd, f->tmp, f->dirfd, f->base) < 0)
        return fail(f, -errno);
    f->named = false;
    /* The temporary's name is gone, so its lock may go too. Errors from close() after a
     * successful fsync carry nothing more about the data. */
    close(f->fd);
    f->fd = -1;
    rc = sync_fd(f->dirfd);
    close(f->dirfd);
    f->dirfd = -1;
    if (rc < 0) {
        /* Published but perhaps not durable: report it; there is nothing left to remove. */
        f->state = ST_FAILED;
        f->err = rc;
        return rc;
    }
    f->state = ST_DONE;
    return 0;
}

void ct_file_free(ct_file_t *f)
{
    if (!f)
        return;
    discard(f);
    ct__free(f);
}

/* ---- sweeping ------------------------------------------------------------------------------ */

/* Attempts at the directory's creation lock before a sweep leaves an entry for next time. */
#define DIR_LOCK_TRIES 1000

/* Take the directory's creation lock exclusively: no writer is then between creating a named
 * temporary and locking it. Writers hold it for a few system calls, so yield rather than block
 * (a stopped writer must not hang the sweep). Returns 1 held; 0 this file system cannot lock
 * directories (go on without); -EAGAIN still busy (leave the entry for the next sweep). */
static int dir_lock_exclusive(int dirfd)
{
    for (int tries = 0; tries < DIR_LOCK_TRIES; tries++) {
        if (flock(dirfd, LOCK_EX | LOCK_NB) == 0)
            return 1;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return 0;
        sched_yield();
    }
    return -EAGAIN;
}

/* Remove the temporary `name` in `dirfd` if its writer is gone.
 * Returns 1 removed; 0 left alone (live writer, not a regular file, cannot be opened, gone);
 * negative errno if it could not be removed. */
static int sweep_one(int dirfd, const char *name)
{
    struct stat st;
    /* Look before opening: opening a FIFO or a device can block or have side effects. */
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return 0;
    /* Open for writing where allowed: NFS emulates an exclusive flock with a write lock. */
    const int how = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    int fd = openat(dirfd, name, O_RDWR | how);
    if (fd < 0)
        fd = openat(dirfd, name, O_RDONLY | how);
    if (fd < 0)
        return 0;
    int held = dir_lock_exclusive(dirfd);
    int rc = 0;
    if (held >= 0 && lock_file(dirfd, name, fd) == 0) {
        /* Unlinked while locked: no writer can be using this file. (Without the directory
         * lock, a writer that made this name a moment ago finds it gone once it has the lock,
         * and makes another one.) */
        if (unlinkat(dirfd, name, 0) == 0)
            rc = 1;
        else if (errno != ENOENT)
            rc = -errno;
    }
    if (held > 0)
        flock(dirfd, LOCK_UN);
    close(fd);
    return rc;
}

int ct_file_sweep(const char *dir, const ct_token_t *tok)
{
    if (!dir)
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return -errno;
    DIR *d = fdopendir(dirfd);
    if (!d) {
        int err = -errno;
        close(dirfd);
        return err;
    }
    int removed = 0, err = 0;
    for (;;) {
        if (ct_token_canceled(tok)) {
            err = -ECANCELED;
            break;
        }
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno && !err)
                err = -errno;
            break;
        }
        if (!is_temp_name(e->d_name) || (e->d_type != DT_REG && e->d_type != DT_UNKNOWN))
            continue;
        int rc = sweep_one(dirfd, e->d_name);
        if (rc > 0)
            removed++;
        else if (rc < 0 && !err)
            err = rc; /* keep going: one stuck temporary should not protect the others */
    }
    closedir(d);
    return err < 0 ? err : removed;
}
