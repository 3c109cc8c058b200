/* Helpers shared by the channel tests. */
#ifndef CT_TEST_CHAN_UTIL_H
#define CT_TEST_CHAN_UTIL_H

#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "ct/chan.h"
#include "ct/token.h"
#include "testutil.h"

static inline ct_chan_t *new_chan(size_t elem_size, size_t capacity)
{
    ct_chan_t *ch;
    assert_int_equal(0, ct_chan_new(&ch, elem_size, capacity));
    return ch;
}

static inline ct_source_t *new_source(void)
{
    ct_source_t *s;
    assert_int_equal(0, ct_source_new(&s));
    return s;
}

static inline void send_value(ct_chan_t *ch, int64_t v)
{
    assert_int_equal(0, ct_chan_send(ch, &v, NULL, -1));
}

static inline int64_t recv_value(ct_chan_t *ch)
{
    int64_t v = -1;
    assert_int_equal(0, ct_chan_recv(ch, &v, NULL, -1));
    return v;
}

/* Is thread `tid` of this process asleep (state S: parked on its futex)? */
static inline bool asleep(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int) tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    return p && p[1] == ' ' && p[2] == 'S';
}

#endif
