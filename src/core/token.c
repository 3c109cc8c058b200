/* Sources, tokens, callback registration, linked sources, timeouts and shields.
 *
 * Everything that has to be consistent lives in one 64-bit state word per source:
 *
 *   bit 0        CANCELED     set once, by the cancel that wins
 *   bit 1        LOCKED       a tiny spin lock guarding the callback list (held for a few stores)
 *   bit 2        DETACHED     the owner freed the source: no timer may be armed any more
 *   bit 3        TIMER_USED   a timer was armed at least once: free must kill it
 *   bits 16..31  reason
 *   bits 32..63  reference count
 *
 * Checking a token is one acquire load of that word. Canceling sets CANCELED, LOCKED and the
 * reason in one CAS, so registration and cancellation are totally ordered: a register that takes
 * the lock before the cancel is in the list and will be run by the canceller; one that takes it
 * after sees CANCELED and runs its callback itself. Registering takes the lock and a reference in
 * the same CAS, so a registration costs two atomic operations and keeps the source alive.
 *
 * Only a thread holding the lock, or one doing a CAS on an unlocked word, changes the word; the
 * lock holder can therefore unlock with a plain store of the value it computed. That is why
 * ref/unref wait for the lock bit to clear instead of using fetch_add.
 *
 * The canceller pops one callback at a time under the lock and runs it unlocked (as libstdc++ and
 * folly do), so other threads can still unregister callbacks that have not run. A thread that
 * unregisters the callback being run waits on a futex only if it has to; the canceller wakes it
 * only if someone waits, so canceling costs no system call per callback. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct/time.h"
#include "ct/token.h"
#include "internal.h"
#include "timer.h"

#define ST_CANCELED    CT__CANCELED_BIT
#define ST_LOCKED      UINT64_C(2)
#define ST_DETACHED    UINT64_C(4)
#define ST_TIMER_USED  UINT64_C(8)
#define ST_REASON_MASK (UINT64_C(0xffff) << CT__REASON_SHIFT)
#define ST_REF         (UINT64_C(1) << 32)
#define ST_REFS(v)     ((v) >> 32)

enum kind { KIND_PLAIN, KIND_TIMEOUT, KIND_LINKED, KIND_SHIELD };

struct ct_source {
    struct ct_token tok;        /* first: a token pointer is a source pointer */
    uint32_t gen;               /* futex word, bumped when a waited-for callback returns */
    uint32_t waiters;           /* lock: a thread waits for `running` to return */
    struct ct_reg *head;        /* lock: pending callbacks, newest first */
    struct ct_reg *running;     /* lock: the callback the canceller is running */
    const void *running_thread; /* lock: the canceller's thread */
    int published;              /* atomic: detail and cause are written */
    uint8_t kind;
    uint8_t origin; /* where the block came from and goes back to: see the block cache */
    uint32_t nparents;
    struct ct_source *cause; /* what canceled this: itself, or a parent (a reference is held) */
    struct ct_source *defer_next, *defer_parent; /* this thread's deferred cancellations */
    int deferred;                                /* atomic: queued there once already */
    struct ct__timer timer;
    int64_t deadline_ns; /* atomic: when the armed timer fires, INT64_MAX if none */
    int64_t canceled_at; /* ct_now_ns() when canceled; published with the detail */
    char detail[CT_DETAIL_MAX];
    struct ct_reg parents[]; /* a linked source's registrations on its parents */
};

static inline struct ct_source *src_of(const ct_token_t *tok)
{
    return (struct ct_source *) (void *) tok;
}

static inline uint64_t load_state(const struct ct_source *s, int order)
{
    return __atomic_load_n(&s->tok.state_, order);
}

static inline bool cas_state(struct ct_source *s, uint64_t *expected, uint64_t desired, int order)
{
    return __atomic_compare_exchange_n(&s->tok.state_, expected, desired, true, order,
                                       __ATOMIC_RELAXED);
}

static inline void unlock(struct ct_source *s, uint64_t v)
{
    __atomic_store_n(&s->tok.state_, v & ~ST_LOCKED, __ATOMIC_RELEASE);
}

static void release(struct ct_source *s);

/* ---- the block cache ------------------------------------------------------------------------
 * Sources come and go at request rate, and in a multi-threaded process malloc + free costs more
 * than everything else a source does. Each thread keeps up to CACHE_MAX freed blocks of each of
 * the common sizes (0, 1 and 2 parents) and reuses them. Only blocks from the C library's
 * allocator are cached, and only while it is the one in use: an allocator installed with
 * ct_allocator_set() sees every allocation, as its user (a leak counter, a test that fails
 * allocations) expects. ASan builds do not cache, so that a use after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHE_MAX 0
#endif
#endif
#ifndef CACHE_MAX
#define CACHE_MAX 32
#endif
#define CACHE_CLASSES 3
#define ORIGIN_LIBC   CACHE_CLASSES       /* the C library's, of a size not cached */
#define ORIGIN_OTHER  (CACHE_CLASSES + 1) /* an allocator from ct_allocator_set() */

static _Thread_local struct {
    struct ct_source *head[CACHE_CLASSES]; /* linked through defer_next */
    unsigned n[CACHE_CLASSES];
    bool registered;
} cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

/* At thread exit the cached blocks go back to the C library. */
static void cache_drop(void *unused)
{
    (void) unused;
    for (int c = 0; c < CACHE_CLASSES; c++) {
        while (cache.head[c]) {
            struct ct_source *s = cache.head[c];
            cache.head[c] = s->defer_next;
            free(s);
        }
        cache.n[c] = 0;
    }
}

static void cache_init(void)
{
    pthread_key_create(&cache_key, cache_drop);
}

static struct ct_source *alloc_block(size_t nparents)
{
    bool libc = ct__allocator_is_libc();
    if (libc && nparents < CACHE_CLASSES && cache.head[nparents]) {
        struct ct_source *s = cache.head[nparents];
        cache.head[nparents] = s->defer_next;
        cache.n[nparents]--;
        return s;
    }
    struct ct_source *s = ct__malloc(sizeof(*s) + nparents * sizeof(struct ct_reg));
    if (s)
        s->origin = (uint8_t) (!libc                      ? ORIGIN_OTHER
                               : nparents < CACHE_CLASSES ? nparents
                                                          : ORIGIN_LIBC);
    return s;
}

static void free_block(struct ct_source *s)
{
    unsigned c = s->origin;
    if (c < CACHE_CLASSES && cache.n[c] < CACHE_MAX && ct__allocator_is_libc()) {
        if (!cache.registered) {
            pthread_once(&cache_once, cache_init);
            pthread_setspecific(cache_key, &cache);
            cache.registered = true;
        }
        s->defer_next = cache.head[c];
        cache.head[c] = s;
        cache.n[c]++;
        return;
    }
    if (c == ORIGIN_OTHER)
        ct__free(s);
    else
        free(s); /* it came from the C library, whatever allocator is in use now */
}

/* Unlock and drop one reference; the last reference releases the memory. */
static void unlock_unref(struct ct_source *s, uint64_t v)
{
    v -= ST_REF;
    unlock(s, v);
    if (ST_REFS(v) == 0)
        release(s);
}

/* Change the word of an unlocked source with one CAS: v -> (v | set) + add.
 * Returns the word before the change. */
static inline __attribute__((always_inline)) uint64_t update(struct ct_source *s, uint64_t set,
                                                             uint64_t add)
{
    unsigned spins = 0;
    uint64_t v = load_state(s, __ATOMIC_RELAXED);
    for (;;) {
        if (v & ST_LOCKED) {
            ct__spin(&spins);
            v = load_state(s, __ATOMIC_RELAXED);
        } else if (cas_state(s, &v, (v | set) + add, __ATOMIC_ACQ_REL)) {
            return v;
        }
    }
}

/* Take the lock, adding `add` to the word in the same CAS (a reference, for a registration).
 * Returns the word as it is now, locked. */
static inline uint64_t lock_add(struct ct_source *s, uint64_t add)
{
    return (update(s, ST_LOCKED, add) | ST_LOCKED) + add;
}

static inline uint64_t lock(struct ct_source *s)
{
    return lock_add(s, 0);
}

static inline void ref(struct ct_source *s)
{
    update(s, 0, ST_REF);
}

static inline void unref(struct ct_source *s)
{
    if (ST_REFS(update(s, 0, -ST_REF)) == 1)
        release(s);
}

/* The last reference is gone. A canceled source holds a reference on its cause; dropping it may
 * release the cause too, so walk the chain iteratively (chains of linked sources can be long). */
static void release(struct ct_source *s)
{
    while (s) {
        struct ct_source *cause = s->cause != s ? s->cause : NULL;
        free_block(s);
        s = cause && ST_REFS(update(cause, 0, -ST_REF)) == 1 ? cause : NULL;
    }
}

/* A reader saw CANCELED; the canceller writes detail and cause right after, under the lock. */
static void wait_published(const struct ct_source *s)
{
    unsigned spins = 0;
    while (!__atomic_load_n(&s->published, __ATOMIC_ACQUIRE))
        ct__spin(&spins);
}

/* ---- cancellation -------------------------------------------------------------------------- */

/* Cancel `s`, recording `cause` (s itself, or a parent on which the caller took a reference
 * that passes to s if this call wins). Runs the callbacks on this thread. With `unless_detached`
 * (a timer, a deferred parent) nothing happens once the owner has freed s: after
 * ct_source_free() returns, neither cancels it any more.
 * Returns 1 if this call canceled s, 0 if it was canceled already (or detached). */
static int cancel_one(struct ct_source *s, int reason, const char *detail, struct ct_source *cause,
                      bool unless_detached)
{
    unsigned spins = 0;
    uint64_t v = load_state(s, __ATOMIC_RELAXED);
    for (;;) {
        if ((v & ST_CANCELED) || (unless_detached && (v & ST_DETACHED)))
            return 0;
        if (v & ST_LOCKED) {
            ct__spin(&spins);
            v = load_state(s, __ATOMIC_RELAXED);
            continue;
        }
        /* Win, lock, and take a reference for the duration: a callback may drop the last
         * other reference (a request freeing itself once its token fired). Release: whoever
         * sees the canceled bit also sees what this thread wrote before canceling. */
        uint64_t won = v | ST_CANCELED | ST_LOCKED | ((uint64_t) reason << CT__REASON_SHIFT);
        if (cas_state(s, &v, won + ST_REF, __ATOMIC_ACQ_REL)) {
            v = won + ST_REF;
            break;
        }
    }

    s->cause = cause;
    s->canceled_at = ct_now_ns();
    if (detail) {
        size_t n = strnlen(detail, CT_DETAIL_MAX - 1);
        memcpy(s->detail, detail, n);
        s->detail[n] = '\0';
    } else {
        s->detail[0] = '\0';
    }
    s->running_thread = ct__thread_id();
    __atomic_store_n(&s->published, 1, __ATOMIC_RELEASE);

    const ct_token_t *tok = &s->tok;
    for (;;) {
        struct ct_reg *r = s->head;
        if (!r)
            break;
        s->head = r->next_;
        if (s->head)
            s->head->pprev_ = &s->head;
        r->pprev_ = NULL;
        r->ran_ = 1;
        s->running = r;
        unlock(s, v);

        /* From here on r may be unregistered and freed by the callback itself: never touch it
         * again, only `s`, on which this call holds a reference. */
        r->cb_(r->arg_, tok);

        v = lock(s);
        s->running = NULL;
        if (s->waiters) {
            /* Someone is blocked in unregister waiting for this callback to return. */
            s->waiters = 0;
            __atomic_store_n(&s->gen, s->gen + 1, __ATOMIC_RELEASE);
            unlock(s, v);
            ct__futex_wake(&s->gen, INT_MAX);
            v = lock(s);
        }
    }
    s->running_thread = NULL;
    unlock_unref(s, v);
    return 1;
}

/* Canceling a parent cancels its linked children from its callbacks, which recurses once per
 * level of a chain. Past MAX_DEPTH levels the children are queued on the thread instead (each
 * holding a reference on itself and on its parent), and the outermost cancel on the thread
 * cancels them before it returns, so chains of any length cannot overflow the stack. */
#define MAX_DEPTH 32
static _Thread_local unsigned cancel_depth;
static _Thread_local struct ct_source *deferred_head;

static int cancel(struct ct_source *s, int reason, const char *detail, struct ct_source *cause,
                  bool unless_detached)
{
    cancel_depth++;
    int rc = cancel_one(s, reason, detail, cause, unless_detached);
    if (cancel_depth == 1) {
        struct ct_source *c;
        while ((c = deferred_head)) {
            deferred_head = c->defer_next;
            struct ct_source *parent = c->defer_parent;
            if (!cancel_one(c, ct_token_reason(&parent->tok), parent->detail, parent, true))
                unref(parent);
            unref(c);
        }
    }
    cancel_depth--;
    return rc;
}

static bool reason_valid(int reason)
{
    return (reason >= CT_CANCELED && reason <= CT_SIBLING_FAILED) ||
           (reason >= CT_REASON_USER && reason <= CT_REASON_MAX);
}

int ct_source_cancel(ct_source_t *src, int reason, const char *detail)
{
    if (!src || !reason_valid(reason))
        return -EINVAL;
    return cancel(src, reason, detail, src, false);
}

/* ---- registration -------------------------------------------------------------------------- */

/* The body of register and unregister, inlined into the linked-source paths too. */
static inline int reg_add(const ct_token_t *tok, ct_reg_t *reg, ct_cancel_cb cb, void *arg)
{
    reg->cb_ = cb;
    reg->arg_ = arg;
    reg->pprev_ = NULL;
    reg->src_ = NULL;
    if (!tok) {
        reg->ran_ = 0;
        return 0;
    }
    struct ct_source *s = src_of(tok);
    if (!(load_state(s, __ATOMIC_ACQUIRE) & ST_CANCELED)) {
        uint64_t v = lock_add(s, ST_REF);
        if (!(v & ST_CANCELED)) {
            reg->ran_ = 0;
            reg->next_ = s->head;
            if (s->head)
                s->head->pprev_ = &reg->next_;
            reg->pprev_ = &s->head;
            s->head = reg;
            reg->src_ = s;
            unlock(s, v);
            return 0;
        }
        unlock(s, v - ST_REF); /* the caller holds a reference: this is never the last */
    }
    /* Canceled already (perhaps a moment ago, by a canceller still running callbacks): run now,
     * after the canceller has published the detail the callback may read. */
    wait_published(s);
    reg->ran_ = 1;
    cb(arg, tok);
    return 1;
}

/* The callback of `reg` is running on another thread: wait until it returns. Lock held. */
static __attribute__((noinline)) uint64_t wait_running(struct ct_source *s, ct_reg_t *reg,
                                                       uint64_t v)
{
    while (s->running == reg) {
        if (s->running_thread == ct__thread_id())
            break; /* called from inside this very callback: waiting would deadlock */
        uint32_t gen = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
        s->waiters = 1;
        unlock(s, v);
        ct__futex_wait(&s->gen, gen, -1);
        v = lock(s);
    }
    return v;
}

static inline bool reg_remove(ct_reg_t *reg)
{
    struct ct_source *s = reg->src_;
    if (!s)
        return reg->ran_ != 0;
    uint64_t v = lock(s);
    bool ran = reg->pprev_ == NULL;
    if (!ran) {
        *reg->pprev_ = reg->next_;
        if (reg->next_)
            reg->next_->pprev_ = reg->pprev_;
        reg->pprev_ = NULL;
    } else if (s->running == reg) {
        v = wait_running(s, reg, v);
    }
    reg->src_ = NULL;
    reg->ran_ = ran;
    unlock_unref(s, v);
    return ran;
}

int ct_token_register(const ct_token_t *tok, ct_reg_t *reg, ct_cancel_cb cb, void *arg)
{
    if (!reg || !cb)
        return -EINVAL;
    return reg_add(tok, reg, cb, arg);
}

bool ct_token_unregister(ct_reg_t *reg)
{
    return reg ? reg_remove(reg) : false;
}

/* ---- creation and teardown ----------------------------------------------------------------- */

static void cancel_timeout(struct ct_source *s, int64_t timeout_ms);
static void timer_pin(struct ct__timer *t);
static void timer_fire(struct ct__timer *t, int64_t timeout_ms);
static const struct ct__timer_ops timer_ops = {timer_pin, timer_fire};

static struct ct_source *alloc_source(enum kind kind, size_t nparents, uint64_t bits)
{
    struct ct_source *s = alloc_block(nparents);
    if (!s)
        return NULL;
    s->tok.state_ = ST_REF | bits;
    s->gen = 0;
    s->waiters = 0;
    s->head = NULL;
    s->running = NULL;
    s->running_thread = NULL;
    s->published = 0;
    s->kind = (uint8_t) kind;
    s->nparents = 0;
    s->cause = NULL;
    s->deferred = 0;
    s->deadline_ns = INT64_MAX;
    ct__timer_init(&s->timer, &timer_ops);
    return s;
}

int ct_source_new(ct_source_t **out)
{
    if (!out)
        return -EINVAL;
    *out = alloc_source(KIND_PLAIN, 0, 0);
    return *out ? 0 : -ENOMEM;
}

/* Arm the timer of a source that no other thread can see yet. */
static int new_timed(ct_source_t **out, enum kind kind, int64_t timeout_ms)
{
    struct ct_source *s = alloc_source(kind, 0, timeout_ms > 0 ? ST_TIMER_USED : 0);
    if (!s)
        return -ENOMEM;
    if (timeout_ms == 0) {
        cancel_timeout(s, 0);
    } else {
        s->deadline_ns = ct_now_ns() + timeout_ms * 1000000;
        int rc = ct__timer_start(&s->timer, s->deadline_ns, timeout_ms);
        if (rc < 0) {
            free_block(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

int ct_source_new_timeout(ct_source_t **out, int64_t timeout_ms)
{
    if (!out || timeout_ms < 0 || timeout_ms > CT_TIMEOUT_MAX_MS)
        return -EINVAL;
    return new_timed(out, KIND_TIMEOUT, timeout_ms);
}

int ct_source_new_shield(ct_source_t **out, int64_t timeout_ms)
{
    if (!out || timeout_ms < 1 || timeout_ms > CT_TIMEOUT_MAX_MS)
        return -EINVAL;
    return new_timed(out, KIND_SHIELD, timeout_ms);
}

static void on_parent_canceled(void *arg, const ct_token_t *ptok)
{
    struct ct_source *child = arg, *parent = src_of(ptok);
    wait_published(parent);
    ref(parent); /* kept by the child as its cause */
    if (cancel_depth >= MAX_DEPTH) {
        int no = 0;
        if (__atomic_compare_exchange_n(&child->deferred, &no, 1, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            ref(child);
            child->defer_parent = parent;
            child->defer_next = deferred_head;
            deferred_head = child;
            return;
        }
        unref(parent); /* queued already, by another of its parents */
        return;
    }
    if (!cancel(child, ct_token_reason(ptok), parent->detail, parent, false))
        unref(parent);
}

int ct_source_new_linked(ct_source_t **out, const ct_token_t *const parents[], size_t n)
{
    if (!out || (n > 0 && !parents) || n > UINT32_MAX)
        return -EINVAL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += parents[i] != NULL;
    struct ct_source *s = alloc_source(KIND_LINKED, m, 0);
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!parents[i])
            continue;
        if (reg_add(parents[i], &s->parents[s->nparents++], on_parent_canceled, s) == 1)
            break; /* that parent was canceled already, and so is s now: no need for the rest */
    }
    *out = s;
    return 0;
}

void ct_source_free(ct_source_t *s)
{
    if (!s)
        return;
    if (s->nparents > 0) {
        /* DETACHED first, in one CAS on the lock: ct_token_deadline() reads the parent links
         * under this lock only while the source is not detached, so they stay put for it. */
        update(s, ST_DETACHED, 0);
        for (uint32_t i = 0; i < s->nparents; i++)
            reg_remove(&s->parents[i]);
    }
    uint64_t v = load_state(s, __ATOMIC_ACQUIRE);
    if (ST_REFS(v) == 1 && !(v & ST_TIMER_USED)) {
        /* Only the owner's reference is left and no parent or timer can reach s any more:
         * nobody else can take a reference, so no atomic operation is needed. The acquire load
         * pairs with the release of whoever dropped the previous reference. */
        release(s);
        return;
    }
    /* Others hold references. Mark DETACHED so that no timer can be armed any more, and kill
     * the timer if one ever was (it may still point at s) before dropping the owner's one. */
    if (update(s, ST_DETACHED, 0) & ST_TIMER_USED)
        ct__timer_kill(&s->timer);
    unref(s);
}

ct_source_t *ct_source_ref(ct_source_t *src)
{
    if (src)
        ref(src);
    return src;
}

void ct_source_unref(ct_source_t *src)
{
    if (src)
        unref(src);
}

const ct_token_t *ct_token_ref(const ct_token_t *tok)
{
    if (tok)
        ref(src_of(tok));
    return tok;
}

void ct_token_unref(const ct_token_t *tok)
{
    if (tok)
        unref(src_of(tok));
}

/* ---- timeouts ------------------------------------------------------------------------------ */

static void cancel_timeout(struct ct_source *s, int64_t timeout_ms)
{
    char detail[CT_DETAIL_MAX];
    snprintf(detail, sizeof(detail),
             s->kind == KIND_SHIELD ? "shield deadline of %lld ms passed"
                                    : "timed out after %lld ms",
             (long long) timeout_ms);
    cancel(s, CT_TIMEOUT, detail, s, true);
}

static void timer_pin(struct ct__timer *t)
{
    ref(ct__container_of(t, struct ct_source, timer));
}

static void timer_fire(struct ct__timer *t, int64_t timeout_ms)
{
    struct ct_source *s = ct__container_of(t, struct ct_source, timer);
    cancel_timeout(s, timeout_ms);
    unref(s); /* the reference pin() took */
}

int ct_source_cancel_after(ct_source_t *s, int64_t timeout_ms)
{
    if (!s || timeout_ms < -1 || timeout_ms > CT_TIMEOUT_MAX_MS)
        return -EINVAL;
    uint64_t v = load_state(s, __ATOMIC_ACQUIRE);
    if (v & (ST_CANCELED | ST_DETACHED))
        return 0;
    if (timeout_ms == -1) {
        if (v & ST_TIMER_USED)
            ct__timer_stop(&s->timer);
        __atomic_store_n(&s->deadline_ns, INT64_MAX, __ATOMIC_RELAXED);
        return 0;
    }
    if (timeout_ms == 0) {
        cancel_timeout(s, 0);
        return 0;
    }
    /* Record TIMER_USED under the lock, unless the owner detached meanwhile: free() then sees
     * the bit and kills the timer, and a kill that comes first makes the start below fail. */
    v = lock(s);
    if (v & ST_DETACHED) {
        unlock(s, v);
        return 0;
    }
    unlock(s, v | ST_TIMER_USED);
    int64_t deadline = ct_now_ns() + timeout_ms * 1000000;
    int rc = ct__timer_start(&s->timer, deadline, timeout_ms);
    if (rc == 0)
        __atomic_store_n(&s->deadline_ns, deadline, __ATOMIC_RELAXED);
    return rc == -ESRCH ? 0 : rc;
}

/* ---- queries ------------------------------------------------------------------------------- */

const char *ct_token_detail(const ct_token_t *tok)
{
    if (!ct_token_canceled(tok))
        return NULL;
    wait_published(src_of(tok));
    return src_of(tok)->detail;
}

int64_t ct_token_canceled_at_ns(const ct_token_t *tok)
{
    if (!ct_token_canceled(tok))
        return 0;
    wait_published(src_of(tok));
    return src_of(tok)->canceled_at;
}

const ct_token_t *ct_token_origin(const ct_token_t *tok)
{
    if (!ct_token_canceled(tok))
        return NULL;
    struct ct_source *s = src_of(tok);
    for (;;) {
        wait_published(s);
        if (s->cause == s)
            return &s->tok;
        s = s->cause;
    }
}

bool ct_token_caused_by(const ct_token_t *tok, const ct_token_t *cause)
{
    if (!cause || !ct_token_canceled(tok))
        return false;
    struct ct_source *s = src_of(tok);
    for (;;) {
        if (&s->tok == cause)
            return true;
        wait_published(s);
        if (s->cause == s)
            return false;
        s = s->cause;
    }
}

/* Deeper chains of linked sources than this are not followed further up by ct_token_deadline:
 * each level costs a stack frame here. */
#define DEADLINE_MAX_DEPTH 256

static int64_t deadline_ns(struct ct_source *s, unsigned depth)
{
    uint64_t v = load_state(s, __ATOMIC_ACQUIRE);
    if (v & ST_CANCELED) {
        wait_published(s);
        return s->canceled_at;
    }
    if (v & ST_DETACHED)
        return INT64_MAX; /* the owner freed it: no timer, no parent reaches it any more */
    int64_t best = __atomic_load_n(&s->deadline_ns, __ATOMIC_RELAXED);
    if (depth >= DEADLINE_MAX_DEPTH)
        return best;
    for (uint32_t i = 0; i < s->nparents; i++) {
        /* Read the link under s's lock while s is not detached (ct_source_free sets DETACHED
         * under that lock before unlinking), and keep the parent alive with a reference. */
        v = lock(s);
        struct ct_source *p = (v & ST_DETACHED) ? NULL : s->parents[i].src_;
        if (p)
            ref(p);
        unlock(s, v);
        if (!p)
            continue;
        int64_t d = deadline_ns(p, depth + 1);
        unref(p);
        if (d < best)
            best = d;
    }
    return best;
}

int64_t ct_token_deadline(const ct_token_t *tok)
{
    if (!tok)
        return CT_DEADLINE_NONE;
    int64_t ns = deadline_ns(src_of(tok), 0);
    if (ns == INT64_MAX)
        return CT_DEADLINE_NONE;
    return ns / 1000000; /* rounded as ct_now_ms() rounds the same clock */
}

const char *ct_reason_name(int reason)
{
    switch (reason) {
    case CT_REASON_NONE:
        return "none";
    case CT_CANCELED:
        return "canceled";
    case CT_TIMEOUT:
        return "timeout";
    case CT_CLIENT_ABORTED:
        return "client_aborted";
    case CT_SHUTDOWN:
        return "shutdown";
    case CT_SIBLING_FAILED:
        return "sibling_failed";
    default:
        return (reason >= CT_REASON_USER && reason <= CT_REASON_MAX) ? "user" : "invalid";
    }
}
