/* ct-demo end to end: the real program on a loopback port, real curl as the client, its log read
 * from its stderr. Every seed 000 scenario, the client leaving mid-request, bad parameters, and
 * SIGTERM during a request. */
#define _GNU_SOURCE
#include <dirent.h>

#include "demo_util.h"

static char out[1 << 16];

static void test_healthz_and_help(void **state)
{
    struct demo *d = demo_start();
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/healthz", NULL));
    assert_string_equal("{\"status\":\"ok\"}", out);
    assert_int_equal(0, demo_stop(d));
    int status;
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execl(CT_DEMO_PATH, CT_DEMO_PATH, "--help", (char *) NULL);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    assert_int_equal(0, WEXITSTATUS(status));
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(CT_DEMO_PATH, CT_DEMO_PATH, "--bogus", (char *) NULL);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    assert_int_equal(2, WEXITSTATUS(status));
}

static void test_report_completes(void **state)
{
    struct demo *d = demo_start();
    assert_int_equal(
        0, curl(d, out, sizeof(out), "GET", "/api/Demo/reports/generate?rows=5&delayMs=2", NULL));
    assert_non_null(strstr(out, "\"rowsProcessed\":5"));
    assert_non_null(strstr(out, "\"delayPerRowMs\":2"));
    assert_non_null(strstr(out, "\"startedAt\":\""));
    assert_non_null(strstr(out, "\"completedAt\":\""));
    assert_int_equal(0, demo_stop(d));
}

static void test_curl_max_time_cancels_the_report_and_logs_499(void **state)
{
    struct demo *d = demo_start();
    int64_t t0 = ct_now_ms();
    assert_int_equal(28, curl(d, out, sizeof(out), "GET",
                              "/api/Demo/reports/generate?rows=200&delayMs=25", "--max-time 0.3"));
    assert_true(CT_WAIT_FOR(logged(d, "Report generation cancelled"), 5000));
    assert_true(CT_WAIT_FOR(logged(d, "GET /api/Demo/reports/generate 499"), 5000));
    assert_true(logged(d, "info GET /api/Demo/reports/generate 499"));
    assert_true(logged(d, "reason=client_aborted"));
    assert_true(ct_now_ms() - t0 < 5000 * ct_test_scale()); /* not the 5 s of the full report */
    assert_int_equal(0, demo_stop(d));
}

static void test_timeout_run_reports_its_own_timeout(void **state)
{
    struct demo *d = demo_start();
    assert_int_equal(
        0, curl(d, out, sizeof(out), "POST", "/api/Demo/timeout/run?timeoutMs=100", NULL));
    assert_non_null(strstr(out, "\"completed\":false"));
    assert_non_null(strstr(out, "\"timedOut\":true"));
    assert_int_equal(0, demo_stop(d));
}

static void test_linked_search_says_timeout_or_client(void **state)
{
    struct demo *d = demo_start();
    assert_int_equal(
        0, curl(d, out, sizeof(out), "POST", "/api/Demo/linked/search?timeoutMs=300", NULL));
    assert_non_null(strstr(out, "\"reason\":\"Timeout\""));
    assert_true(CT_WAIT_FOR(logged(d, "Request cancelled due to TIMEOUT"), 5000));
    assert_int_equal(28, curl(d, out, sizeof(out), "POST",
                              "/api/Demo/linked/search?timeoutMs=10000", "--max-time 0.3"));
    assert_true(CT_WAIT_FOR(logged(d, "Request cancelled by CLIENT"), 5000));
    assert_true(CT_WAIT_FOR(logged(d, "POST /api/Demo/linked/search 499"), 5000));
    assert_int_equal(0, demo_stop(d));
}

static void test_parallel_scrape_cascades_a_failure(void **state)
{
    struct demo *d = demo_start();
    assert_int_equal(0, curl(d, out, sizeof(out), "POST",
                             "/api/Demo/parallel/scrape?n=4&delayMs=30&failWorker=2", NULL));
    assert_non_null(strstr(out, "\"completed\":false"));
    assert_non_null(strstr(out, "\"canceled\":true"));
    assert_non_null(strstr(out, "Scraper 2 hit anti-bot."));
    assert_true(CT_WAIT_FOR(logged(d, "canceled at step"), 5000));
    assert_true(logged(d, "sibling_failed"));
    assert_int_equal(0, curl(d, out, sizeof(out), "POST",
                             "/api/Demo/parallel/scrape?n=3&delayMs=5&failWorker=-1", NULL));
    assert_non_null(strstr(out, "\"completed\":true"));
    assert_non_null(strstr(out, "{\"worker\":3,"));
    assert_int_equal(0, demo_stop(d));
}

static int count_files(const char *dir)
{
    int n = 0;
    DIR *dp = opendir(dir);
    struct dirent *e;
    while (dp && (e = readdir(dp))) /* the written files, not the demo's databases */
        n += e->d_name[0] != '.' && !strstr(e->d_name, ".db");
    if (dp)
        closedir(dp);
    return n;
}

static void test_file_write_completes_or_leaves_nothing(void **state)
{
    struct demo *d = demo_start();
    assert_int_equal(
        0, curl(d, out, sizeof(out), "POST", "/api/Demo/files/write?sizeMb=2&chunkMs=1", NULL));
    assert_non_null(strstr(out, "\"sizeMB\":2"));
    assert_non_null(strstr(out, "\"canceled\":false"));
    assert_int_equal(1, count_files(d->dir));
    char name[80];
    sscanf(strstr(out, "\"fileName\":\"") + 12, "%79[^\"]", name);
    char path[200];
    snprintf(path, sizeof(path), "%s/%s", d->dir, name);
    struct stat st;
    assert_int_equal(0, stat(path, &st));
    assert_int_equal(2 << 20, st.st_size);
    /* The client leaves half-way: nothing is left of the second file. */
    assert_int_equal(28, curl(d, out, sizeof(out), "POST",
                              "/api/Demo/files/write?sizeMb=50&chunkMs=50", "--max-time 0.3"));
    assert_true(CT_WAIT_FOR(logged(d, "File write cancelled (client_aborted)"), 5000));
    assert_int_equal(1, count_files(d->dir));
    assert_int_equal(0, demo_stop(d));
}

static void test_out_of_range_parameters_get_400(void **state)
{
    struct demo *d = demo_start();
    assert_int_equal(0, curl(d, out, sizeof(out), "POST", "/api/Demo/parallel/scrape?n=65", NULL));
    assert_non_null(strstr(out, "\"parameter\":\"n\""));
    assert_int_equal(0,
                     curl(d, out, sizeof(out), "GET", "/api/Demo/reports/generate?rows=0", NULL));
    assert_non_null(strstr(out, "\"parameter\":\"rows\""));
    assert_int_equal(0,
                     curl(d, out, sizeof(out), "POST", "/api/Demo/files/write?sizeMb=2000", NULL));
    assert_non_null(strstr(out, "\"parameter\":\"sizeMb\""));
    assert_int_equal(0, demo_stop(d));
}

struct bg_curl {
    struct demo *d;
    char out[256];
    int rc;
};

static void *curl_work(void *arg)
{
    struct bg_curl *b = arg;
    b->rc =
        curl(b->d, b->out, sizeof(b->out), "GET", "/work?ms=60000", "-o /dev/null -w %{http_code}");
    return NULL;
}

static void test_sigterm_during_a_request_answers_503_and_exits_0(void **state)
{
    struct demo *d = demo_start();
    struct bg_curl b = {.d = d};
    ct_test_thread_t *th = ct_test_thread_start(curl_work, &b);
    /* The request is in when the in-flight gauge counts it (and this /metrics request). */
    char m[1 << 15];
    assert_true(CT_WAIT_FOR(curl(d, m, sizeof(m), "GET", "/metrics", NULL) == 0 &&
                                strstr(m, "ct_http_requests_in_flight 2\n"),
                            10000));
    demo_sigterm(d);
    ct_test_thread_join(th); /* drained 300 ms, then CT_SHUTDOWN */
    assert_int_equal(0, b.rc);
    assert_string_equal("503", b.out);
    assert_true(CT_WAIT_FOR(logged(d, "demo stopped"), 10000));
    assert_true(logged(d, "SIGTERM: stopping"));
    assert_true(logged(d, "GET /work 503"));
    assert_true(logged(d, "reason=shutdown"));
    assert_int_equal(0, demo_stop(d));
}

CT_TEST_MAIN(cmocka_unit_test(test_healthz_and_help), cmocka_unit_test(test_report_completes),
             cmocka_unit_test(test_curl_max_time_cancels_the_report_and_logs_499),
             cmocka_unit_test(test_timeout_run_reports_its_own_timeout),
             cmocka_unit_test(test_linked_search_says_timeout_or_client),
             cmocka_unit_test(test_parallel_scrape_cascades_a_failure),
             cmocka_unit_test(test_file_write_completes_or_leaves_nothing),
             cmocka_unit_test(test_out_of_range_parameters_get_400),
             cmocka_unit_test(test_sigterm_during_a_request_answers_503_and_exits_0))
