/* bench_curl: an outbound HTTP call whose token fires mid-body. How long until the call returns,
 * and until the upstream sees its connection close?
 *
 *   1. ct_curl_perform (multi interface, curl_multi_wakeup from the token's callback), upstream
 *      trickling the body (100 bytes every 5 ms), token fired by another thread 0..20 ms after
 *      the body began: fired -> returned and fired -> upstream saw FIN/RST, p50/p99;
 *   2. the peer: curl_easy_perform with a CURLOPT_XFERINFOFUNCTION that returns non-zero once
 *      the token is canceled (the usual way), same upstream, same cancel points;
 *   3. and 4. the same two against an upstream that stalls after the first body bytes (sends
 *      nothing more): libcurl's progress callback then runs only about once a second.
 * The upstream is tests/integration/slow_server.h (plain sockets, one thread per connection),
 * in this process on 127.0.0.1. Every loop is bounded by a count.
 *   bench_curl [--quick] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "ct.h"
#include "ct/curl.h"
#include "slow_server.h"

#define BATCH 50 /* connections per upstream server (it keeps one thread per connection) */

struct shot {
    struct slow_server *s;
    ct_source_t *src;
    int64_t fired_ns;
};

/* Fire the token 0..20 ms after the body began. */
static void *fire(void *arg)
{
    struct shot *sh = arg;
    if (!slow_sem_wait_ms(&sh->s->body_started, 10000)) {
        fprintf(stderr, "bench_curl: the body never started\n");
        exit(1);
    }
    usleep((useconds_t) (rand() % 20000)); /* a random point in the body, not synchronisation */
    sh->fired_ns = bench_now_ns();
    ct_source_cancel(sh->src, CT_CANCELED, NULL);
    return NULL;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void) p;
    (void) arg;
    return size * n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void) dt;
    (void) dn;
    (void) ut;
    (void) un;
    return ct_token_canceled(arg);
}

/* One aborted transfer; returns fired -> returned in *ret and fired -> upstream close in *cls. */
static void one(struct slow_server *s, bool peer, int64_t *ret, int64_t *cls)
{
    ct_source_t *src;
    if (ct_source_new(&src) < 0)
        exit(1);
    struct shot sh = {.s = s, .src = src};
    pthread_t t;
    pthread_create(&t, NULL, fire, &sh);

    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s->port);
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    int rc;
    if (peer) {
        curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(easy, CURLOPT_XFERINFODATA, (void *) ct_source_token(src));
        rc = curl_easy_perform(easy) == CURLE_ABORTED_BY_CALLBACK ? -ECANCELED : -EIO;
    } else {
        rc = ct_curl_perform(easy, ct_source_token(src));
    }
    int64_t returned = bench_now_ns();
    pthread_join(t, NULL);
    if (rc != -ECANCELED) {
        fprintf(stderr, "bench_curl: the transfer ended with %d, not -ECANCELED\n", rc);
        exit(1);
    }
    if (!slow_sem_wait_ms(&s->closed, 10000)) {
        fprintf(stderr, "bench_curl: the upstream never saw the connection close\n");
        exit(1);
    }
    *ret = returned - sh.fired_ns;
    *cls = __atomic_load_n(&s->closed_at_ns, __ATOMIC_ACQUIRE) - sh.fired_ns;
    curl_easy_cleanup(easy);
    ct_source_free(src);
}

static void run(const char *name, enum slow_mode mode, bool peer, int n)
{
    int64_t *ret = calloc((size_t) n, sizeof(*ret)), *cls = calloc((size_t) n, sizeof(*cls));
    struct slow_server s;
    for (int i = 0; i < n; i++) {
        if (i % BATCH == 0) {
            if (i)
                slow_stop(&s);
            slow_start(&s, mode, (size_t) 1 << 30); /* a body that outlasts any run */
        }
        one(&s, peer, &ret[i], &cls[i]);
    }
    slow_stop(&s);
    printf("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f |\n", name, n,
           bench_percentile(ret, n, 50) / 1e6, bench_percentile(ret, n, 99) / 1e6,
           bench_percentile(cls, n, 50) / 1e6, bench_percentile(cls, n, 99) / 1e6,
           bench_percentile(cls, n, 100) / 1e6);
    free(ret);
    free(cls);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int n = quick ? 50 : 500, n_stall = quick ? 5 : 20;
    srand(1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    printf("libcurl %s; upstream on 127.0.0.1 in this process; token fired by another thread "
           "0..20 ms into the body\n\n",
           curl_version_info(CURLVERSION_NOW)->version);
    printf("| transfer | n | fired → returned p50 ms | p99 ms | fired → upstream saw close p50 ms "
           "| p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
    run("trickled body, ct_curl_perform", SLOW_TRICKLE, false, n);
    run("peer: trickled body, curl_easy_perform + XFERINFOFUNCTION", SLOW_TRICKLE, true, n);
    run("stalled body, ct_curl_perform", SLOW_STALL, false, n_stall);
    run("peer: stalled body, curl_easy_perform + XFERINFOFUNCTION", SLOW_STALL, true, n_stall);
    curl_global_cleanup();
    return 0;
}
