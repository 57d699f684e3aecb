/* What Python sees of pacer_loop.c: cffi's declarations (build_backend/native_build.py reads
   this file as they are). No preprocessor lines: cffi reads it. */

/* The pacer process's loop (member/pacer.py `serve`, same protocol) until the daemon's end of
   `ctl` closes: the answers handed over on `ctl` kept, each sent on `lan` at its moment
   (CLOCK_BOOTTIME nanoseconds), answers handed over more than `late_after` ns after their
   moment reported on `ctl`, at most every `report_every` ns. Returns 0 when the daemon's end
   closed, -1 on an error of `ctl` or of the clock (errno says which), -2 out of memory. */
int lanon_pacer_serve1(int ctl, int lan, int64_t late_after, int64_t report_every);
