/* The pacer's loop in compiled code (member/pacer.py says what the pacer is for).

   The pacer wakes twice a round: when its daemon hands it an answer, and at the answer's
   moment. In Python each wake-up ran some 20 us of interpreter, on a host whose cores every
   member's daemon needs in the same instant (the lab runs all of them on two), and brought the
   interpreter's memory back into the cache; here it is a few hundred instructions. The protocol
   and what is reported are the Python loop's, which stays for a checkout never installed. */

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "pacer_loop.h"

#define SUBMIT_LEN 16   /* `!qQ`: due (ns), round */
#define LENGTH_LEN 2    /* `!H` before each frame */
#define LATE_LEN 20     /* `!IQq`: count, round, late by (ns) */
#define RECEIVE_MAX 65536
#define HELD_MAX 65536  /* frames kept at once: far more than any answer has */

struct held {
    int64_t due;
    uint64_t seq; /* in the order handed over, among frames of one moment */
    uint64_t rnd;
    int64_t handed;
    size_t len;
    unsigned char *frame;
};

static struct held *heap;
static size_t count, room;

static int64_t now_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t get_be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be(unsigned char *p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static int before(const struct held *a, const struct held *b) {
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static int push(struct held h) {
    if (count == room) {
        size_t more = room ? room * 2 : 64;
        if (more > HELD_MAX)
            return -1;
        struct held *grown = realloc(heap, more * sizeof *heap);
        if (grown == NULL)
            return -1;
        heap = grown, room = more;
    }
    size_t i = count++;
    while (i > 0 && before(&h, &heap[(i - 1) / 2])) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = h;
    return 0;
}

static struct held pop(void) {
    struct held top = heap[0], last = heap[--count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= count)
            break;
        if (child + 1 < count && before(&heap[child + 1], &heap[child]))
            child++;
        if (!before(&heap[child], &last))
            break;
        heap[i] = heap[child];
        i = child;
    }
    if (count)
        heap[i] = last;
    return top;
}

/* The messages waiting on `ctl`, their frames kept: 1 if the daemon's end closed, -1 on an
   error, -2 out of memory, else 0. */
static int take(int ctl, unsigned char *msg, uint64_t *seq) {
    for (;;) {
        ssize_t n = recv(ctl, msg, RECEIVE_MAX, MSG_DONTWAIT);
        if (n == 0)
            return 1;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return errno == ECONNRESET ? 1 : -1;
        }
        if (n < SUBMIT_LEN)
            continue; /* only the daemon writes here: nothing of the kind is sent */
        int64_t due = (int64_t)get_be(msg, 8);
        uint64_t rnd = get_be(msg + 8, 8);
        int64_t handed = now_ns();
        size_t at = SUBMIT_LEN;
        while (at + LENGTH_LEN <= (size_t)n) {
            size_t len = (size_t)get_be(msg + at, LENGTH_LEN);
            at += LENGTH_LEN;
            if (len > (size_t)n - at)
                len = (size_t)n - at; /* (as Python's slice would) */
            unsigned char *frame = malloc(len ? len : 1);
            if (frame == NULL)
                return -2;
            memcpy(frame, msg + at, len);
            struct held h = {due, ++*seq, rnd, handed, len, frame};
            if (push(h) != 0) {
                free(frame);
                return -2;
            }
            at += len;
        }
    }
}

int lanon_pacer_serve1(int ctl, int lan, int64_t late_after, int64_t report_every) {
    static unsigned char msg[RECEIVE_MAX];
    uint64_t seq = 0, counted = 0, late = 0;
    int64_t late_by = 0, report_at = 0;
    for (;;) {
        int64_t now = now_ns(), wait = -1;
        if (now < 0)
            return -1;
        if (count)
            wait = heap[0].due > now ? heap[0].due - now : 0;
        if (late) { /* a report waits */
            int64_t until = report_at > now ? report_at - now : 0;
            wait = wait < 0 || until < wait ? until : wait;
        }
        struct pollfd p = {ctl, POLLIN, 0};
        struct timespec ts = {wait / 1000000000, wait % 1000000000};
        int ready = ppoll(&p, 1, wait < 0 ? NULL : &ts, NULL);
        if (ready < 0 && errno != EINTR)
            return -1;
        if (ready > 0) {
            int taken = take(ctl, msg, &seq);
            if (taken == 1)
                return 0; /* the daemon is gone */
            if (taken < 0)
                return taken;
        }
        now = now_ns();
        if (count && heap[0].due <= now) {
            int64_t due = heap[0].due, handed = heap[0].handed;
            uint64_t rnd = heap[0].rnd;
            while (count && heap[0].due <= now) {
                struct held h = pop();
                (void)send(lan, h.frame, h.len, 0); /* a full buffer or a link down: lost */
                free(h.frame);
            }
            /* a late answer is counted once (its parts may come one by one) */
            if (handed - due > late_after && rnd != counted) {
                counted = rnd, late_by = handed - due;
                late++;
            }
        }
        if (late && now >= report_at) {
            unsigned char report[LATE_LEN];
            put_be(report, late, 4);
            put_be(report + 4, counted, 8);
            put_be(report + 12, (uint64_t)late_by, 8);
            if (send(ctl, report, LATE_LEN, MSG_DONTWAIT) == LATE_LEN)
                late = 0; /* (a full pair: the count waits for the next report) */
            report_at = now + report_every;
        }
    }
}
