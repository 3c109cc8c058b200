/* Sources, tokens, callbacks and linked sources: the contract of ct/token.h. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ct/time.h"
#include "ct/token.h"
#include "ct/wait.h"
#include "testutil.h"

/* A callback that appends its id to a log, so tests can assert exact counts and order. */
struct log {
    int ids[16];
    int n;
    const void *thread;
};

struct entry {
    struct log *log;
    int id;
};

static void record(void *arg, const ct_token_t *tok)
{
    struct entry *e = arg;
    (void) tok;
    e->log->ids[e->log->n++] = e->id;
    e->log->thread = ct_test_thread_self();
}

static ct_source_t *new_source(void)
{
    ct_source_t *s = NULL;
    assert_int_equal(0, ct_source_new(&s));
    assert_non_null(s);
    return s;
}

static void test_new_source_is_not_canceled(void **state)
{
    ct_source_t *s = new_source();
    const ct_token_t *t = ct_source_token(s);
    assert_false(ct_token_canceled(t));
    assert_int_equal(0, ct_token_check(t));
    assert_int_equal(CT_REASON_NONE, ct_token_reason(t));
    assert_null(ct_token_detail(t));
    assert_null(ct_token_origin(t));
    ct_source_free(s);
}

static void test_null_token_is_never_canceled(void **state)
{
    struct log log = {0};
    struct entry e = {&log, 1};
    ct_reg_t reg;
    assert_false(ct_token_canceled(NULL));
    assert_int_equal(0, ct_token_check(NULL));
    assert_int_equal(CT_REASON_NONE, ct_token_reason(NULL));
    assert_null(ct_token_detail(NULL));
    assert_int_equal(0, ct_token_register(NULL, &reg, record, &e));
    assert_false(ct_token_unregister(&reg));
    assert_int_equal(0, log.n);
    assert_null(ct_token_ref(NULL));
    ct_token_unref(NULL);
    ct_source_free(NULL);
}

static void test_cancel_records_reason_and_detail(void **state)
{
    ct_source_t *s = new_source();
    const ct_token_t *t = ct_source_token(s);
    assert_int_equal(1, ct_source_cancel(s, CT_CLIENT_ABORTED, "peer reset"));
    assert_true(ct_token_canceled(t));
    assert_int_equal(-ECANCELED, ct_token_check(t));
    assert_int_equal(CT_CLIENT_ABORTED, ct_token_reason(t));
    assert_string_equal("peer reset", ct_token_detail(t));
    assert_ptr_equal(t, ct_token_origin(t));
    ct_source_free(s);
}

static void test_cancel_records_when_it_happened(void **state)
{
    ct_source_t *s = new_source(), *c;
    const ct_token_t *parents[] = {ct_source_token(s)};
    ct_source_new_linked(&c, parents, 1);
    assert_int_equal(0, ct_token_canceled_at_ns(ct_source_token(s)));
    assert_int_equal(0, ct_token_canceled_at_ns(NULL));
    int64_t before = ct_now_ns();
    ct_source_cancel(s, CT_CANCELED, NULL);
    int64_t after = ct_now_ns();
    int64_t at = ct_token_canceled_at_ns(ct_source_token(s));
    assert_true(at >= before && at <= after);
    int64_t child_at = ct_token_canceled_at_ns(ct_source_token(c));
    assert_true(child_at >= at && child_at <= after);
    ct_source_free(c);
    ct_source_free(s);
}

static void test_cancel_without_detail_gives_empty_detail(void **state)
{
    ct_source_t *s = new_source();
    assert_int_equal(1, ct_source_cancel(s, CT_CANCELED, NULL));
    assert_string_equal("", ct_token_detail(ct_source_token(s)));
    ct_source_free(s);
}

static void test_first_cancel_wins(void **state)
{
    ct_source_t *s = new_source();
    assert_int_equal(1, ct_source_cancel(s, CT_TIMEOUT, "first"));
    assert_int_equal(0, ct_source_cancel(s, CT_SHUTDOWN, "second"));
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(s)));
    assert_string_equal("first", ct_token_detail(ct_source_token(s)));
    ct_source_free(s);
}

static void test_cancel_rejects_invalid_reason(void **state)
{
    ct_source_t *s = new_source();
    assert_int_equal(-EINVAL, ct_source_cancel(s, CT_REASON_NONE, NULL));
    assert_int_equal(-EINVAL, ct_source_cancel(s, CT_SIBLING_FAILED + 1, NULL));
    assert_int_equal(-EINVAL, ct_source_cancel(s, CT_REASON_USER - 1, NULL));
    assert_int_equal(-EINVAL, ct_source_cancel(s, CT_REASON_MAX + 1, NULL));
    assert_int_equal(-EINVAL, ct_source_cancel(s, -1, NULL));
    assert_int_equal(-EINVAL, ct_source_cancel(NULL, CT_CANCELED, NULL));
    assert_false(ct_token_canceled(ct_source_token(s)));
    ct_source_free(s);
}

static void test_user_reason_codes_are_kept(void **state)
{
    ct_source_t *s = new_source();
    assert_int_equal(1, ct_source_cancel(s, CT_REASON_USER + 7, "quota"));
    assert_int_equal(CT_REASON_USER + 7, ct_token_reason(ct_source_token(s)));
    assert_string_equal("user", ct_reason_name(CT_REASON_USER + 7));
    ct_source_free(s);

    s = new_source();
    assert_int_equal(1, ct_source_cancel(s, CT_REASON_MAX, NULL));
    assert_int_equal(CT_REASON_MAX, ct_token_reason(ct_source_token(s)));
    ct_source_free(s);
}

static void test_detail_is_cut_at_detail_max(void **state)
{
    char long_detail[200];
    memset(long_detail, 'x', sizeof(long_detail) - 1);
    long_detail[sizeof(long_detail) - 1] = '\0';
    ct_source_t *s = new_source();
    ct_source_cancel(s, CT_CANCELED, long_detail);
    assert_int_equal(CT_DETAIL_MAX - 1, strlen(ct_token_detail(ct_source_token(s))));
    ct_source_free(s);
}

static void test_callbacks_run_once_newest_first(void **state)
{
    struct log log = {0};
    struct entry e[3] = {{&log, 1}, {&log, 2}, {&log, 3}};
    ct_reg_t reg[3];
    ct_source_t *s = new_source();
    for (int i = 0; i < 3; i++)
        assert_int_equal(0, ct_token_register(ct_source_token(s), &reg[i], record, &e[i]));
    assert_int_equal(0, log.n);
    ct_source_cancel(s, CT_CANCELED, NULL);
    assert_int_equal(3, log.n);
    assert_int_equal(3, log.ids[0]);
    assert_int_equal(2, log.ids[1]);
    assert_int_equal(1, log.ids[2]);
    ct_source_cancel(s, CT_CANCELED, NULL);
    assert_int_equal(3, log.n);
    for (int i = 0; i < 3; i++)
        assert_true(ct_token_unregister(&reg[i]));
    ct_source_free(s);
}

struct cancel_args {
    ct_source_t *src;
    int reason;
    int rc;
};

static void *cancel_thread(void *arg)
{
    struct cancel_args *a = arg;
    a->rc = ct_source_cancel(a->src, a->reason, "from another thread");
    return NULL;
}

static void test_callback_runs_on_canceling_thread(void **state)
{
    struct log log = {0};
    struct entry e = {&log, 1};
    ct_reg_t reg;
    ct_source_t *s = new_source();
    ct_token_register(ct_source_token(s), &reg, record, &e);
    struct cancel_args a = {s, CT_SHUTDOWN, 0};
    ct_test_thread_join(ct_test_thread_start(cancel_thread, &a));
    assert_int_equal(1, a.rc);
    assert_int_equal(1, log.n);
    assert_non_null(log.thread);
    assert_ptr_not_equal(ct_test_thread_self(), log.thread);
    ct_token_unregister(&reg);
    ct_source_free(s);
}

static void test_register_after_cancel_runs_at_once_on_this_thread(void **state)
{
    struct log log = {0};
    struct entry e = {&log, 1};
    ct_reg_t reg;
    ct_source_t *s = new_source();
    ct_source_cancel(s, CT_CANCELED, NULL);
    assert_int_equal(1, ct_token_register(ct_source_token(s), &reg, record, &e));
    assert_int_equal(1, log.n);
    assert_ptr_equal(ct_test_thread_self(), log.thread);
    assert_true(ct_token_unregister(&reg));
    ct_source_free(s);
}

static void test_register_rejects_missing_arguments(void **state)
{
    ct_source_t *s = new_source();
    ct_reg_t reg;
    assert_int_equal(-EINVAL, ct_token_register(ct_source_token(s), NULL, record, NULL));
    assert_int_equal(-EINVAL, ct_token_register(ct_source_token(s), &reg, NULL, NULL));
    ct_source_free(s);
}

static void test_unregister_before_cancel_prevents_callback(void **state)
{
    struct log log = {0};
    struct entry e[2] = {{&log, 1}, {&log, 2}};
    ct_reg_t reg[2];
    ct_source_t *s = new_source();
    ct_token_register(ct_source_token(s), &reg[0], record, &e[0]);
    ct_token_register(ct_source_token(s), &reg[1], record, &e[1]);
    assert_false(ct_token_unregister(&reg[0]));
    ct_source_cancel(s, CT_CANCELED, NULL);
    assert_int_equal(1, log.n);
    assert_int_equal(2, log.ids[0]);
    assert_true(ct_token_unregister(&reg[1]));
    ct_source_free(s);
}

/* Blocks inside the callback until released, to catch unregister returning too early. */
struct blocking {
    ct_sem_t entered, release;
    int finished;          /* atomic */
    int finished_at_unreg; /* what the unregistering thread saw when unregister returned */
    int unreg_returned;    /* atomic */
    bool ran;
    ct_reg_t reg;
};

static void blocking_cb(void *arg, const ct_token_t *tok)
{
    struct blocking *b = arg;
    (void) tok;
    ct_sem_post(&b->entered);
    ct_sem_wait(&b->release, NULL, -1);
    __atomic_store_n(&b->finished, 1, __ATOMIC_SEQ_CST);
}

static void *unregister_thread(void *arg)
{
    struct blocking *b = arg;
    b->ran = ct_token_unregister(&b->reg);
    b->finished_at_unreg = __atomic_load_n(&b->finished, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b->unreg_returned, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_unregister_waits_for_running_callback(void **state)
{
    struct blocking b = {0};
    ct_sem_init(&b.entered, 0);
    ct_sem_init(&b.release, 0);
    ct_source_t *s = new_source();
    ct_token_register(ct_source_token(s), &b.reg, blocking_cb, &b);
    struct cancel_args a = {s, CT_CANCELED, 0};
    ct_test_thread_t *canceller = ct_test_thread_start(cancel_thread, &a);
    assert_int_equal(0, ct_sem_wait(&b.entered, NULL, -1));

    ct_test_thread_t *unreg = ct_test_thread_start(unregister_thread, &b);
    /* The callback is held: unregister must not return whatever time passes. */
    assert_false(CT_WAIT_FOR(__atomic_load_n(&b.unreg_returned, __ATOMIC_SEQ_CST), 50));
    ct_sem_post(&b.release);
    ct_test_thread_join(unreg);
    ct_test_thread_join(canceller);
    assert_true(b.ran);
    assert_int_equal(1, b.finished_at_unreg);
    ct_source_free(s);
    ct_sem_destroy(&b.entered);
    ct_sem_destroy(&b.release);
}

/* A callback that unregisters itself and frees its own registration. */
struct self_removing {
    ct_reg_t reg;
    bool ran;
    int *count;
};

static void self_removing_cb(void *arg, const ct_token_t *tok)
{
    struct self_removing *sr = arg;
    (void) tok;
    sr->ran = ct_token_unregister(&sr->reg);
    (*sr->count)++;
    int *count = sr->count;
    free(sr); /* the canceller must not touch sr->reg after this */
    (void) count;
}

static void test_unregister_inside_own_callback_does_not_deadlock(void **state)
{
    int count = 0;
    ct_source_t *s = new_source();
    for (int i = 0; i < 3; i++) {
        struct self_removing *sr = calloc(1, sizeof(*sr));
        sr->count = &count;
        ct_token_register(ct_source_token(s), &sr->reg, self_removing_cb, sr);
    }
    /* From another thread too, where the canceller is not the registering thread. */
    struct cancel_args a = {s, CT_CANCELED, 0};
    ct_test_thread_join(ct_test_thread_start(cancel_thread, &a));
    assert_int_equal(3, count);
    ct_source_free(s);
}

struct other {
    ct_reg_t *victim;
    bool victim_ran;
};

static void unregister_other_cb(void *arg, const ct_token_t *tok)
{
    struct other *o = arg;
    (void) tok;
    o->victim_ran = ct_token_unregister(o->victim);
}

static void test_callback_can_unregister_a_pending_callback(void **state)
{
    struct log log = {0};
    struct entry e = {&log, 1};
    ct_reg_t victim, killer;
    struct other o = {&victim, true};
    ct_source_t *s = new_source();
    ct_token_register(ct_source_token(s), &victim, record, &e);
    ct_token_register(ct_source_token(s), &killer, unregister_other_cb, &o); /* runs first */
    ct_source_cancel(s, CT_CANCELED, NULL);
    assert_false(o.victim_ran);
    assert_int_equal(0, log.n);
    assert_true(ct_token_unregister(&killer));
    ct_source_free(s);
}

static void cancel_other_cb(void *arg, const ct_token_t *tok)
{
    ct_source_cancel(arg, CT_SIBLING_FAILED, ct_token_detail(tok));
}

static void test_callback_can_cancel_another_source(void **state)
{
    ct_source_t *a = new_source(), *b = new_source();
    ct_reg_t reg;
    ct_token_register(ct_source_token(a), &reg, cancel_other_cb, b);
    ct_source_cancel(a, CT_CANCELED, "worker 3 failed");
    assert_int_equal(CT_SIBLING_FAILED, ct_token_reason(ct_source_token(b)));
    assert_string_equal("worker 3 failed", ct_token_detail(ct_source_token(b)));
    ct_token_unregister(&reg);
    ct_source_free(a);
    ct_source_free(b);
}

struct seen {
    int reason;
    char detail[CT_DETAIL_MAX];
    const ct_token_t *origin;
};

static void inspect_cb(void *arg, const ct_token_t *tok)
{
    struct seen *seen = arg;
    seen->reason = ct_token_reason(tok);
    strcpy(seen->detail, ct_token_detail(tok));
    seen->origin = ct_token_origin(tok);
}

static void test_callback_sees_reason_detail_and_origin(void **state)
{
    struct seen seen = {0};
    ct_source_t *p = new_source(), *c;
    const ct_token_t *parents[] = {ct_source_token(p)};
    assert_int_equal(0, ct_source_new_linked(&c, parents, 1));
    ct_reg_t reg;
    ct_token_register(ct_source_token(c), &reg, inspect_cb, &seen);
    ct_source_cancel(p, CT_SHUTDOWN, "SIGTERM");
    assert_int_equal(CT_SHUTDOWN, seen.reason);
    assert_string_equal("SIGTERM", seen.detail);
    assert_ptr_equal(ct_source_token(p), seen.origin);
    ct_token_unregister(&reg);
    ct_source_free(c);
    ct_source_free(p);
}

/* ---- linked sources ------------------------------------------------------------------------ */

static void test_linked_source_is_canceled_by_any_parent(void **state)
{
    for (int which = 0; which < 2; which++) {
        ct_source_t *p[2] = {new_source(), new_source()}, *c;
        const ct_token_t *parents[] = {ct_source_token(p[0]), ct_source_token(p[1])};
        assert_int_equal(0, ct_source_new_linked(&c, parents, 2));
        const ct_token_t *t = ct_source_token(c);
        assert_false(ct_token_canceled(t));
        ct_source_cancel(p[which], which ? CT_CLIENT_ABORTED : CT_TIMEOUT, "why");
        assert_true(ct_token_canceled(t));
        assert_int_equal(which ? CT_CLIENT_ABORTED : CT_TIMEOUT, ct_token_reason(t));
        assert_string_equal("why", ct_token_detail(t));
        assert_ptr_equal(parents[which], ct_token_origin(t));
        assert_true(ct_token_caused_by(t, parents[which]));
        assert_false(ct_token_caused_by(t, parents[!which]));
        assert_false(ct_token_canceled(parents[!which]));
        ct_source_free(c);
        ct_source_free(p[0]);
        ct_source_free(p[1]);
    }
}

static void test_linked_source_keeps_the_first_parents_reason(void **state)
{
    ct_source_t *p[2] = {new_source(), new_source()}, *c;
    const ct_token_t *parents[] = {ct_source_token(p[0]), ct_source_token(p[1])};
    ct_source_new_linked(&c, parents, 2);
    ct_source_cancel(p[1], CT_TIMEOUT, "deadline");
    ct_source_cancel(p[0], CT_CLIENT_ABORTED, "gone");
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(c)));
    assert_string_equal("deadline", ct_token_detail(ct_source_token(c)));
    assert_ptr_equal(parents[1], ct_token_origin(ct_source_token(c)));
    ct_source_free(c);
    ct_source_free(p[0]);
    ct_source_free(p[1]);
}

static void test_linked_source_with_a_canceled_parent_starts_canceled(void **state)
{
    ct_source_t *p[2] = {new_source(), new_source()}, *c;
    ct_source_cancel(p[1], CT_SHUTDOWN, "stopping");
    const ct_token_t *parents[] = {ct_source_token(p[0]), ct_source_token(p[1])};
    assert_int_equal(0, ct_source_new_linked(&c, parents, 2));
    assert_int_equal(CT_SHUTDOWN, ct_token_reason(ct_source_token(c)));
    assert_ptr_equal(parents[1], ct_token_origin(ct_source_token(c)));
    ct_source_free(c);
    ct_source_free(p[0]);
    ct_source_free(p[1]);
}

static void test_linked_source_skips_null_parents(void **state)
{
    ct_source_t *p = new_source(), *c;
    const ct_token_t *parents[] = {NULL, ct_source_token(p), NULL};
    assert_int_equal(0, ct_source_new_linked(&c, parents, 3));
    ct_source_cancel(p, CT_CANCELED, NULL);
    assert_true(ct_token_canceled(ct_source_token(c)));
    ct_source_free(c);
    ct_source_free(p);
    /* No parents at all: a source that only a direct cancel stops. */
    assert_int_equal(0, ct_source_new_linked(&c, NULL, 0));
    assert_int_equal(1, ct_source_cancel(c, CT_CANCELED, NULL));
    ct_source_free(c);
}

static void test_linked_chain_reports_the_origin(void **state)
{
    ct_source_t *root = new_source(), *mid, *leaf, *other = new_source();
    const ct_token_t *p1[] = {ct_source_token(root)};
    ct_source_new_linked(&mid, p1, 1);
    const ct_token_t *p2[] = {ct_source_token(other), ct_source_token(mid)};
    ct_source_new_linked(&leaf, p2, 2);
    ct_source_cancel(root, CT_SHUTDOWN, "host stopping");
    const ct_token_t *t = ct_source_token(leaf);
    assert_int_equal(CT_SHUTDOWN, ct_token_reason(t));
    assert_string_equal("host stopping", ct_token_detail(t));
    assert_ptr_equal(ct_source_token(root), ct_token_origin(t));
    assert_true(ct_token_caused_by(t, ct_source_token(mid)));
    assert_true(ct_token_caused_by(t, ct_source_token(root)));
    assert_true(ct_token_caused_by(t, t));
    assert_false(ct_token_caused_by(t, ct_source_token(other)));
    assert_false(ct_token_caused_by(t, NULL));
    /* The chain stays readable after its members' owners are gone. */
    ct_token_ref(t);
    ct_source_free(leaf);
    ct_source_free(mid);
    ct_source_free(root);
    assert_ptr_not_equal(NULL, ct_token_origin(t));
    assert_string_equal("host stopping", ct_token_detail(ct_token_origin(t)));
    ct_token_unref(t);
    ct_source_free(other);
}

static void test_linked_source_cancel_does_not_reach_parents(void **state)
{
    ct_source_t *p = new_source(), *c;
    const ct_token_t *parents[] = {ct_source_token(p)};
    ct_source_new_linked(&c, parents, 1);
    ct_source_cancel(c, CT_CANCELED, NULL);
    assert_false(ct_token_canceled(ct_source_token(p)));
    assert_ptr_equal(ct_source_token(c), ct_token_origin(ct_source_token(c)));
    ct_source_free(c);
    ct_source_free(p);
}

static void test_freed_linked_source_is_detached_from_parents(void **state)
{
    struct log log = {0};
    struct entry e = {&log, 1};
    ct_source_t *p = new_source(), *c;
    const ct_token_t *parents[] = {ct_source_token(p)};
    ct_source_new_linked(&c, parents, 1);
    const ct_token_t *t = ct_token_ref(ct_source_token(c)); /* keep observing after free */
    ct_reg_t reg;
    ct_token_register(t, &reg, record, &e);
    ct_source_free(c);
    ct_source_cancel(p, CT_CANCELED, NULL);
    assert_false(ct_token_canceled(t));
    assert_int_equal(0, log.n);
    assert_false(ct_token_unregister(&reg));
    ct_token_unref(t);
    ct_source_free(p);
}

static void test_linked_source_rejects_bad_arguments(void **state)
{
    ct_source_t *c;
    assert_int_equal(-EINVAL, ct_source_new_linked(NULL, NULL, 0));
    assert_int_equal(-EINVAL, ct_source_new_linked(&c, NULL, 2));
}

static void test_deep_chain_of_linked_sources_cancels_without_overflowing_the_stack(void **state)
{
    enum { DEPTH = 200000 }; /* one stack frame set per level would need far more than 8 MB */
    ct_source_t **chain = malloc(DEPTH * sizeof(*chain));
    assert_int_equal(0, ct_source_new(&chain[0]));
    for (int i = 1; i < DEPTH; i++) {
        const ct_token_t *parents[] = {ct_source_token(chain[i - 1])};
        assert_int_equal(0, ct_source_new_linked(&chain[i], parents, 1));
    }
    struct log log = {0};
    struct entry e = {&log, 1};
    ct_reg_t reg;
    ct_token_register(ct_source_token(chain[DEPTH - 1]), &reg, record, &e);
    ct_source_cancel(chain[0], CT_SHUTDOWN, "root");
    /* Done before cancel returned, all the way down. */
    assert_int_equal(1, log.n);
    const ct_token_t *leaf = ct_source_token(chain[DEPTH - 1]);
    assert_int_equal(CT_SHUTDOWN, ct_token_reason(leaf));
    assert_string_equal("root", ct_token_detail(leaf));
    assert_ptr_equal(ct_source_token(chain[0]), ct_token_origin(leaf));
    assert_true(ct_token_caused_by(leaf, ct_source_token(chain[DEPTH / 2])));
    ct_token_unregister(&reg);
    for (int i = DEPTH - 1; i >= 0; i--)
        ct_source_free(chain[i]);
    free(chain);
}

/* ---- ownership ----------------------------------------------------------------------------- */

static void test_free_does_not_cancel(void **state)
{
    ct_source_t *s = new_source();
    const ct_token_t *t = ct_token_ref(ct_source_token(s));
    ct_source_free(s);
    assert_false(ct_token_canceled(t));
    ct_token_unref(t);
}

static void test_source_ref_can_cancel_after_owner_free(void **state)
{
    struct log log = {0};
    struct entry e = {&log, 1};
    ct_source_t *s = new_source();
    ct_source_t *held = ct_source_ref(s);
    ct_reg_t reg;
    ct_token_register(ct_source_token(held), &reg, record, &e);
    ct_source_free(s);
    assert_int_equal(1, ct_source_cancel(held, CT_SHUTDOWN, NULL));
    assert_int_equal(1, log.n);
    ct_token_unregister(&reg);
    ct_source_unref(held);
}

static void test_registration_keeps_the_token_alive(void **state)
{
    ct_test_alloc_install();
    long before = ct_test_alloc_stats().live;
    ct_source_t *s = new_source();
    struct log log = {0};
    struct entry e = {&log, 1};
    ct_reg_t reg;
    ct_token_register(ct_source_token(s), &reg, record, &e);
    ct_source_free(s);
    assert_int_equal(before + 1, ct_test_alloc_stats().live); /* held by the registration */
    assert_false(ct_token_unregister(&reg));
    assert_int_equal(before, ct_test_alloc_stats().live);
    ct_test_alloc_uninstall();
}

static void test_reason_names_and_error_text(void **state)
{
    assert_string_equal("canceled", ct_reason_name(CT_CANCELED));
    assert_string_equal("timeout", ct_reason_name(CT_TIMEOUT));
    assert_string_equal("client_aborted", ct_reason_name(CT_CLIENT_ABORTED));
    assert_string_equal("shutdown", ct_reason_name(CT_SHUTDOWN));
    assert_string_equal("sibling_failed", ct_reason_name(CT_SIBLING_FAILED));
    assert_string_equal("none", ct_reason_name(CT_REASON_NONE));
    assert_string_equal("invalid", ct_reason_name(42));
    assert_string_equal("operation canceled (the token fired)", ct_strerror(-ECANCELED));
    assert_string_equal("deadline passed", ct_strerror(-ETIMEDOUT));
    assert_string_equal("Cannot allocate memory", ct_strerror(-ENOMEM));
    assert_string_equal(ct_strerror(-EINVAL), ct_strerror(EINVAL));
    assert_non_null(ct_strerror(-99999));
    assert_string_equal("unknown error", ct_strerror(INT_MIN));
    assert_false(ct_token_unregister(NULL));
    assert_int_equal(-EINVAL, ct_source_new(NULL));
}

CT_TEST_MAIN(
    cmocka_unit_test(test_new_source_is_not_canceled),
    cmocka_unit_test(test_null_token_is_never_canceled),
    cmocka_unit_test(test_cancel_records_reason_and_detail),
    cmocka_unit_test(test_cancel_records_when_it_happened),
    cmocka_unit_test(test_cancel_without_detail_gives_empty_detail),
    cmocka_unit_test(test_first_cancel_wins), cmocka_unit_test(test_cancel_rejects_invalid_reason),
    cmocka_unit_test(test_user_reason_codes_are_kept),
    cmocka_unit_test(test_detail_is_cut_at_detail_max),
    cmocka_unit_test(test_callbacks_run_once_newest_first),
    cmocka_unit_test(test_callback_runs_on_canceling_thread),
    cmocka_unit_test(test_register_after_cancel_runs_at_once_on_this_thread),
    cmocka_unit_test(test_register_rejects_missing_arguments),
    cmocka_unit_test(test_unregister_before_cancel_prevents_callback),
    cmocka_unit_test(test_unregister_waits_for_running_callback),
    cmocka_unit_test(test_unregister_inside_own_callback_does_not_deadlock),
    cmocka_unit_test(test_callback_can_unregister_a_pending_callback),
    cmocka_unit_test(test_callback_can_cancel_another_source),
    cmocka_unit_test(test_callback_sees_reason_detail_and_origin),
    cmocka_unit_test(test_linked_source_is_canceled_by_any_parent),
    cmocka_unit_test(test_linked_source_keeps_the_first_parents_reason),
    cmocka_unit_test(test_linked_source_with_a_canceled_parent_starts_canceled),
    cmocka_unit_test(test_linked_source_skips_null_parents),
    cmocka_unit_test(test_linked_chain_reports_the_origin),
    cmocka_unit_test(test_linked_source_cancel_does_not_reach_parents),
    cmocka_unit_test(test_freed_linked_source_is_detached_from_parents),
    cmocka_unit_test(test_linked_source_rejects_bad_arguments),
    cmocka_unit_test(test_deep_chain_of_linked_sources_cancels_without_overflowing_the_stack),
    cmocka_unit_test(test_free_does_not_cancel),
    cmocka_unit_test(test_source_ref_can_cancel_after_owner_free),
    cmocka_unit_test(test_registration_keeps_the_token_alive),
    cmocka_unit_test(test_reason_names_and_error_text))
