/* ct/file.h — cancel-safe file output: write a file so that it appears complete or not at all.
 *
 * The bytes go to a temporary file in the target's directory; ct_file_commit() syncs it to disk
 * and renames it over the final name in one step, then syncs the directory. Until that rename
 * the final name is untouched (absent, or the old content); readers see the old file or the new
 * one, never a part. A canceled token, an error, ct_file_free() without a commit — or the
 * process being killed — leave nothing under the final name.
 *
 *   ct_file_t *f;
 *   if ((rc = ct_file_new(&f, "/srv/data/report.bin", 0644, 0)) < 0)
 *       return rc;
 *   while (more && rc >= 0)
 *       rc = ct_file_write(f, chunk, chunk_len, tok);    // -ECANCELED once tok fires
 *   if (rc >= 0)
 *       rc = ct_file_commit(f, tok);
 *   ct_file_free(f);                                     // without a commit: removes the temporary
 *
 * Temporaries. On Linux with a filesystem that supports it the data goes to an unnamed O_TMPFILE
 * inode, so a crash while writing leaves no name at all. Otherwise (or with CT_FILE_NAMED_TEMP)
 * the temporary is a named file in the same directory:
 *
 *   .ct-tmp.<16 lower-case hex digits>.<final name, cut to fit NAME_MAX>
 *
 * An O_TMPFILE temporary gets such a name too, for the instant between linking it and renaming
 * it at commit. Names of that shape are reserved: ct_file_new() refuses them as final names.
 *
 * Sweep rule. Every writer holds an exclusive flock(2) on its temporary from its creation until
 * the temporary is gone. The kernel drops that lock when the last descriptor of the writer's open
 * file goes away — when the process exits or is killed, SIGKILL included. ct_file_sweep()
 * removes a temporary only if it can take that lock without waiting, so it never removes the
 * temporary of a writer that is still alive, in this process or another one.
 *
 * Errors are negative errno values (-ECANCELED: the token fired). Every failure of a write or a
 * commit is final: the temporary is removed before the call returns, later writes and commits
 * return the same code, and only ct_file_free() remains to be called.
 *
 * Threads: a ct_file_t is used by one thread at a time (serialized); different files, and sweeps,
 * may run on any threads at once. See docs/file.md for what fsync does and does not promise. */
#ifndef CT_FILE_H
#define CT_FILE_H

#include <sys/types.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_file ct_file_t;

/* Flags for ct_file_new(). */
enum {
    /* Use a named temporary even where O_TMPFILE works: for filesystems whose O_TMPFILE is
     * broken, for tools that want to see the temporary while it is written, and for tests. */
    CT_FILE_NAMED_TEMP = 1
};

/* Start writing the file that will be published at `path` by ct_file_commit(). Creates the
 * temporary in the directory of `path` (resolved now: the directory is held open, so the file is
 * published in it even if it is renamed or the working directory changes meanwhile). Nothing is
 * created under `path` itself. The published file gets `mode & ~umask`, like open(2), owned by
 * the caller; an existing file at `path` is replaced, not modified: its other hard links, its
 * owner, mode and extended attributes stay with the old inode. A symbolic link at `path` is
 * replaced by the file, not followed.
 * Returns: 0 and *out;
 *   -EINVAL if out or path is NULL, path is empty or ends in '/', its last component is "." or
 *           "..", or has the reserved temporary shape, mode has bits outside 07777, or flags has
 *           unknown bits;
 *   -ENAMETOOLONG if the last component is longer than NAME_MAX or the path than PATH_MAX;
 *   -ENOENT if the directory does not exist; -ENOTDIR if it is not a directory;
 *   -EISDIR if `path` is a directory now; -EACCES, -EROFS, -ENOSPC, -EDQUOT, -EMFILE, -ENOLCK
 *           and other negative errno from creating or locking the temporary;
 *   -ENOMEM.
 * Ownership: the caller owns *out and gives it back with ct_file_free().
 * Thread: any. */
int ct_file_new(ct_file_t **out, const char *path, mode_t mode, int flags);

/* Append `len` bytes of `buf` to the temporary. Short writes and EINTR are retried until every
 * byte is written. `tok` is checked before each write(2), which writes at most 1 MiB: if it has
 * fired when the call starts, nothing is written; if it fires during a long call, the call stops
 * at the next 1 MiB boundary. Either way the call returns -ECANCELED and the file is abandoned
 * (the temporary is removed). The token may be NULL.
 * Returns: len (>= 0);
 *   -ECANCELED if `tok` fired;
 *   -EINVAL if f is NULL, buf is NULL while len > 0, len > SSIZE_MAX, or f was committed;
 *   -ENOSPC, -EDQUOT, -EFBIG, -EIO and other negative errno from write(2);
 *   after an earlier failure, that failure's code again.
 * Thread: serialized (one thread at a time per file). */
ssize_t ct_file_write(ct_file_t *f, const void *buf, size_t len, const ct_token_t *tok);

/* Publish the file: fsync the temporary, rename it over the final name, fsync the directory.
 * `tok` is checked once, before anything starts: if it has fired, the file is abandoned and the
 * call returns -ECANCELED. Once the commit has started it does not look at the token again — it
 * completes or fails as a unit (the shield idea, ct_source_new_shield()), because fsync cannot be
 * interrupted and stopping between the steps would buy nothing. To commit whatever the request's
 * token says (a point of no return), pass NULL or a shield's token.
 * Outcomes:
 *   0: the new content is under the final name, and fsync said it and the rename are on disk.
 *   An error before the rename: the final name is untouched and the temporary is removed.
 *   An error from the directory fsync, after the rename: the new content is already in place
 *   and visible, but the rename may not survive a power loss; nothing else is left over.
 * Returns: 0;
 *   -ECANCELED if `tok` had fired;
 *   -EINVAL if f is NULL or was committed already;
 *   -EISDIR if the final name is now a directory; -ENOENT if the directory was removed;
 *   -EIO, -ENOSPC, -EDQUOT (fsync) and other negative errno;
 *   after an earlier failure, that failure's code again.
 * Thread: serialized. */
int ct_file_commit(ct_file_t *f, const ct_token_t *tok);

/* Release `f`. If it was not committed, this is the abort: the temporary is removed and the
 * final name is left as it was. NULL is ignored. Never fails.
 * Thread: serialized; once per file. */
void ct_file_free(ct_file_t *f);

/* Remove the temporaries that writers which died (crashed, killed, or exited without calling
 * ct_file_free()) left in `dir`: regular files whose name has the temporary shape above and
 * whose writer's lock is free. Other files, directories, symbolic links and the temporaries of
 * live writers are left alone. A temporary this process cannot open for reading (a mode without
 * read permission, as a non-root user) is left alone too. `tok` is checked before each entry.
 * Run it at start-up on the directories the service writes to, or from time to time.
 * Returns: the number of temporaries removed (>= 0);
 *   -ECANCELED if `tok` fired (some temporaries may have been removed already);
 *   -EINVAL if dir is NULL; -ENOENT, -ENOTDIR, -EACCES and other negative errno from opening or
 *   reading the directory, or from removing a temporary.
 * Thread: any. */
int ct_file_sweep(const char *dir, const ct_token_t *tok);

#ifdef __cplusplus
}
#endif
#endif
