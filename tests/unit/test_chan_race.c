/* Channel races and stress, in loops: sends racing a close, wake-ups racing cancellation on both
 * sides, and many producers and consumers. The assertions are the exact counts the contract
 * promises: every element received exactly once, or in the channel exactly when its send returned
 * 0. Run under TSan and ASan as well. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <unistd.h>

#include "chan_util.h"
#include "ct/chan.h"
#include "ct/time.h"
#include "ct/token.h"
#include "testutil.h"

/* ---- close racing sends --------------------------------------------------------------------- */

/* Sends racing a close: every send that returned 0 is received, and nothing else. */
struct closer_race {
    ct_chan_t *ch;
    int64_t sent[2];     /* atomic: per sender, sends that returned 0 */
    int64_t received;    /* consumer's count */
    int64_t sum_sent[2]; /* values of the successful sends */
    int64_t sum_received;
    int last_rc[2];
};

struct closer_sender {
    struct closer_race *r;
    int id;
};

static void *closer_send_loop(void *arg)
{
    struct closer_sender *s = arg;
    for (int64_t i = 1;; i++) {
        int64_t v = i * 2 + s->id;
        int rc = ct_chan_send(s->r->ch, &v, NULL, -1);
        if (rc != 0) {
            s->r->last_rc[s->id] = rc;
            return NULL;
        }
        s->r->sum_sent[s->id] += v;
        __atomic_add_fetch(&s->r->sent[s->id], 1, __ATOMIC_RELAXED);
    }
}

static void *closer_recv_loop(void *arg)
{
    struct closer_race *r = arg;
    int64_t v;
    while (ct_chan_recv(r->ch, &v, NULL, -1) == 0) {
        r->received++;
        r->sum_received += v;
    }
    return NULL;
}

static void test_sends_racing_close_are_all_received_or_refused(void **state)
{
    const size_t caps[] = {1, 8, CT_CHAN_UNBOUNDED};
    for (int round = 0; round < 60; round++) {
        struct closer_race r = {.ch = new_chan(sizeof(int64_t), caps[round % 3])};
        struct closer_sender s[2] = {{&r, 0}, {&r, 1}};
        ct_test_thread_t *c = ct_test_thread_start(closer_recv_loop, &r);
        ct_test_thread_t *t0 = ct_test_thread_start(closer_send_loop, &s[0]);
        ct_test_thread_t *t1 = ct_test_thread_start(closer_send_loop, &s[1]);
        assert_true(CT_WAIT_FOR(__atomic_load_n(&r.sent[0], __ATOMIC_RELAXED) +
                                        __atomic_load_n(&r.sent[1], __ATOMIC_RELAXED) >=
                                    10,
                                10000));
        assert_int_equal(1, ct_chan_close(r.ch));
        ct_test_thread_join(t0);
        ct_test_thread_join(t1);
        ct_test_thread_join(c);
        assert_int_equal(-EPIPE, r.last_rc[0]);
        assert_int_equal(-EPIPE, r.last_rc[1]);
        assert_int_equal(r.sent[0] + r.sent[1], r.received);
        assert_int_equal(r.sum_sent[0] + r.sum_sent[1], r.sum_received);
        ct_chan_free(r.ch);
    }
}

/* ---- wake-ups racing cancellation ----------------------------------------------------------- */

enum { RACE_ROUNDS = 200, RACE_MSGS = 32, RACERS = 2 };

struct race {
    ct_chan_t *ch;
    ct_source_t *src;
    int seen[RACE_MSGS * RACERS]; /* atomic: times each value was received */
    int sent[RACE_MSGS * RACERS]; /* atomic: sends of each value that returned 0 */
    int rc[RACERS];
    pid_t tid[RACERS]; /* atomic */
    int next[RACERS];
};

struct racer {
    struct race *r;
    int id;
};

static void *race_receiver(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    __atomic_store_n(&r->tid[me->id], gettid(), __ATOMIC_RELEASE);
    for (;;) {
        int64_t v;
        int rc = ct_chan_recv(r->ch, &v, ct_source_token(r->src), -1);
        if (rc != 0) {
            r->rc[me->id] = rc;
            return NULL;
        }
        __atomic_add_fetch(&r->seen[v], 1, __ATOMIC_RELAXED);
    }
}

static bool racers_asleep(struct race *r)
{
    for (int i = 0; i < RACERS; i++) {
        pid_t tid = __atomic_load_n(&r->tid[i], __ATOMIC_ACQUIRE);
        if (!tid || !asleep(tid))
            return false;
    }
    return true;
}

/* Start the racers running `fn` and return once all of them are blocked in the channel. */
static void racers_start(struct race *r, struct racer me[RACERS], ct_test_thread_t *th[RACERS],
                         void *(*fn)(void *) )
{
    for (int i = 0; i < RACERS; i++) {
        me[i] = (struct racer){r, i};
        th[i] = ct_test_thread_start(fn, &me[i]);
    }
    assert_true(CT_WAIT_FOR(racers_asleep(r), 10000));
}

/* Join the racers: each one's last call saw the token. */
static void racers_join(struct race *r, ct_test_thread_t *th[RACERS])
{
    for (int i = 0; i < RACERS; i++) {
        ct_test_thread_join(th[i]);
        assert_int_equal(-ECANCELED, r->rc[i]);
    }
}

/* Receivers blocked on an empty channel; a burst of sends wakes them while their token fires.
 * Every element must end up received exactly once, by a receiver or by the final drain. */
static void test_element_is_never_lost_or_duplicated_when_cancel_races_wakeup(void **state)
{
    for (int round = 0; round < RACE_ROUNDS; round++) {
        struct race r = {0};
        r.ch = new_chan(sizeof(int64_t), round % 2 ? CT_CHAN_UNBOUNDED : RACE_MSGS * RACERS);
        r.src = new_source();
        struct racer me[RACERS];
        ct_test_thread_t *th[RACERS];
        racers_start(&r, me, th, race_receiver);
        int cut = round % (RACE_MSGS * RACERS);
        for (int64_t v = 0; v < RACE_MSGS * RACERS; v++) {
            if (v == cut)
                ct_source_cancel(r.src, CT_CANCELED, NULL);
            send_value(r.ch, v);
        }
        racers_join(&r, th);
        int64_t v;
        while (ct_chan_try_recv(r.ch, &v) == 0)
            r.seen[v]++;
        for (int i = 0; i < RACE_MSGS * RACERS; i++)
            assert_int_equal(1, r.seen[i]);
        ct_source_free(r.src);
        ct_chan_free(r.ch);
    }
}

static void *race_sender(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    __atomic_store_n(&r->tid[me->id], gettid(), __ATOMIC_RELEASE);
    for (int k = 0; k < RACE_MSGS; k++) {
        int64_t v = me->id * RACE_MSGS + k;
        int rc = ct_chan_send(r->ch, &v, ct_source_token(r->src), -1);
        if (rc != 0) {
            r->rc[me->id] = rc;
            return NULL;
        }
        __atomic_add_fetch(&r->sent[v], 1, __ATOMIC_RELAXED);
    }
    r->rc[me->id] = 0;
    return NULL;
}

/* Count a received element: 1 if it is one of the prefilled ones (-1), else 0 and `seen` goes up.
 */
static int tally(struct race *r, int64_t v)
{
    if (v < 0)
        return 1;
    r->seen[v]++;
    return 0;
}

/* Senders blocked on a full channel; receives free room while their token fires. An element is
 * in the channel exactly when its send returned 0. */
static void test_send_is_never_lost_or_duplicated_when_cancel_races_wakeup(void **state)
{
    enum { PREFILL = 2 };
    for (int round = 0; round < RACE_ROUNDS; round++) {
        struct race r = {0};
        r.ch = new_chan(sizeof(int64_t), PREFILL);
        r.src = new_source();
        for (int i = 0; i < PREFILL; i++)
            send_value(r.ch, -1);
        struct racer me[RACERS];
        ct_test_thread_t *th[RACERS];
        racers_start(&r, me, th, race_sender);
        int cut = round % 8, prefill_seen = 0;
        for (int i = 0; i < 8; i++) {
            if (i == cut)
                ct_source_cancel(r.src, CT_CANCELED, NULL);
            int64_t v;
            if (ct_chan_try_recv(r.ch, &v) == 0)
                prefill_seen += tally(&r, v);
        }
        racers_join(&r, th);
        int64_t v;
        while (ct_chan_try_recv(r.ch, &v) == 0)
            prefill_seen += tally(&r, v);
        assert_int_equal(PREFILL, prefill_seen);
        for (int i = 0; i < RACE_MSGS * RACERS; i++)
            assert_int_equal(r.sent[i], r.seen[i]);
        ct_source_free(r.src);
        ct_chan_free(r.ch);
    }
}

/* ---- many producers and consumers ----------------------------------------------------------- */

enum { MP_PRODUCERS = 4, MP_CONSUMERS = 4, MP_PER_PRODUCER = 50000 };

struct mp {
    ct_chan_t *ch;
    unsigned char *seen;  /* atomic: times each message was received */
    int64_t received;     /* atomic */
    int64_t sum_received; /* atomic */
    int send_failures;    /* atomic */
};

struct mp_producer {
    struct mp *mp;
    int id;
};

static void *mp_produce(void *arg)
{
    struct mp_producer *p = arg;
    for (int64_t k = 0; k < MP_PER_PRODUCER; k++) {
        int64_t v = p->id * MP_PER_PRODUCER + k;
        if (ct_chan_send(p->mp->ch, &v, NULL, -1) != 0)
            __atomic_add_fetch(&p->mp->send_failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *mp_consume(void *arg)
{
    struct mp *mp = arg;
    int64_t v, n = 0, sum = 0;
    int rc;
    CT_CHAN_FOREACH(mp->ch, &v, NULL, rc)
    {
        __atomic_add_fetch(&mp->seen[v], 1, __ATOMIC_RELAXED);
        n++;
        sum += v;
    }
    if (rc == -EPIPE) {
        __atomic_add_fetch(&mp->received, n, __ATOMIC_RELAXED);
        __atomic_add_fetch(&mp->sum_received, sum, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void many_to_many(size_t capacity)
{
    const int64_t total = (int64_t) MP_PRODUCERS * MP_PER_PRODUCER;
    struct mp mp = {.ch = new_chan(sizeof(int64_t), capacity), .seen = calloc((size_t) total, 1)};
    assert_non_null(mp.seen);
    ct_test_thread_t *cons[MP_CONSUMERS], *prod[MP_PRODUCERS];
    struct mp_producer p[MP_PRODUCERS];
    for (int i = 0; i < MP_CONSUMERS; i++)
        cons[i] = ct_test_thread_start(mp_consume, &mp);
    for (int i = 0; i < MP_PRODUCERS; i++) {
        p[i] = (struct mp_producer){&mp, i};
        prod[i] = ct_test_thread_start(mp_produce, &p[i]);
    }
    for (int i = 0; i < MP_PRODUCERS; i++)
        ct_test_thread_join(prod[i]);
    assert_int_equal(1, ct_chan_close(mp.ch));
    for (int i = 0; i < MP_CONSUMERS; i++)
        ct_test_thread_join(cons[i]);
    assert_int_equal(0, mp.send_failures);
    assert_int_equal(total, mp.received);
    assert_int_equal(total * (total - 1) / 2, mp.sum_received);
    for (int64_t v = 0; v < total; v++)
        if (mp.seen[v] != 1)
            fail_msg("message %lld received %d times", (long long) v, mp.seen[v]);
    assert_int_equal(0, ct_chan_len(mp.ch));
    free(mp.seen);
    ct_chan_free(mp.ch);
}

static void test_many_producers_and_consumers_receive_every_message_once(void **state)
{
    many_to_many(16);
}

static void test_many_producers_and_consumers_on_a_one_slot_channel(void **state)
{
    many_to_many(1);
}

static void test_many_producers_and_consumers_on_an_unbounded_channel(void **state)
{
    many_to_many(CT_CHAN_UNBOUNDED);
}

CT_TEST_MAIN(cmocka_unit_test(test_sends_racing_close_are_all_received_or_refused),
             cmocka_unit_test(test_element_is_never_lost_or_duplicated_when_cancel_races_wakeup),
             cmocka_unit_test(test_send_is_never_lost_or_duplicated_when_cancel_races_wakeup),
             cmocka_unit_test(test_many_producers_and_consumers_receive_every_message_once),
             cmocka_unit_test(test_many_producers_and_consumers_on_a_one_slot_channel),
             cmocka_unit_test(test_many_producers_and_consumers_on_an_unbounded_channel))
