/* A small program hosted by ct-host, driven by test_host with real signals. Each argument adds
 * a service, in order:
 *   svc:NAME        start prints "start NAME", stop prints "stop NAME"
 *   fail:NAME       start prints "start NAME" and fails with -EIO
 *   bg:NAME         a background service that waits for the stopping token, prints
 *                   "token NAME reason=... detail=..." and "return NAME"
 *   stubborn:NAME   a background service that ignores its token (sleeps 60 s)
 *   timeout:MS      the shutdown timeout
 * It prints "exit rc=N" and exits 0 (rc 0), 2 (rc > 0: services abandoned) or 3 (rc < 0). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ct/host.h"
#include "ct/wait.h"

static int svc_start(void *arg, const ct_token_t *stopping)
{
    (void) stopping;
    printf("start %s\n", (const char *) arg);
    return 0;
}

static int svc_stop(void *arg, const ct_token_t *tok)
{
    (void) tok;
    printf("stop %s\n", (const char *) arg);
    return 0;
}

static int fail_start(void *arg, const ct_token_t *stopping)
{
    (void) stopping;
    printf("start %s\n", (const char *) arg);
    return -EIO;
}

static int bg_run(void *arg, const ct_token_t *stopping)
{
    printf("run %s\n", (const char *) arg);
    while (ct_sleep_ms(CT_TIMEOUT_MAX_MS, stopping) == 0)
        ;
    printf("token %s reason=%s detail=%s\n", (const char *) arg,
           ct_reason_name(ct_token_reason(stopping)), ct_token_detail(stopping));
    printf("return %s\n", (const char *) arg);
    return 0;
}

static int stubborn_run(void *arg, const ct_token_t *stopping)
{
    (void) stopping;
    printf("run %s\n", (const char *) arg);
    ct_sleep_ms(60000, NULL); /* ignores the token on purpose */
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    ct_host_options_t o = {0};
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "timeout:", 8) == 0)
            o.shutdown_timeout_ms = atoll(argv[i] + 8);
    ct_host_t *host;
    int rc = ct_host_new(&host, &o);
    if (rc < 0) {
        printf("ct_host_new: %s\n", ct_strerror(rc));
        return 4;
    }
    for (int i = 1; i < argc && rc == 0; i++) {
        char *name = strchr(argv[i], ':') + 1;
        if (strncmp(argv[i], "svc:", 4) == 0)
            rc = ct_host_add(host, &(ct_host_service_t){name, svc_start, svc_stop, name});
        else if (strncmp(argv[i], "fail:", 5) == 0)
            rc = ct_host_add(host, &(ct_host_service_t){name, fail_start, svc_stop, name});
        else if (strncmp(argv[i], "bg:", 3) == 0)
            rc = ct_host_add_background(host, name, bg_run, name);
        else if (strncmp(argv[i], "stubborn:", 9) == 0)
            rc = ct_host_add_background(host, name, stubborn_run, name);
    }
    if (rc < 0) {
        printf("ct_host_add: %s\n", ct_strerror(rc));
        return 4;
    }
    rc = ct_host_run(host);
    printf("exit rc=%d\n", rc);
    if (rc > 0)
        _exit(2); /* abandoned services may still run: do not free what they use */
    ct_host_free(host);
    return rc == 0 ? 0 : 3;
}
