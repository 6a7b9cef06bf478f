/*
 * valgrind-openat2-shim: an LD_PRELOAD library for running containers under valgrind
 * 3.19 (Debian 12), which does not know the openat2(2) system call (437) and fails it
 * with ENOSYS, so the rootfs-pivot plugin refuses to work under it.
 *
 * The plugins call openat2 through glibc's syscall(3); this shim interposes syscall(3)
 * and, for openat2 only, performs the equivalent openat(2) on the path made relative to
 * the directory fd (RESOLVE_IN_ROOT emulated for the test rootfs, which has no absolute
 * or escaping symlinks). Every other system call is forwarded unchanged. Test use only:
 * it does NOT give openat2's safety guarantees. Without valgrind, never preload it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct open_how_v0 {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

long syscall(long number, ...)
{
    va_list ap;
    long a[6];
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_openat2) {
        int dirfd = (int)a[0];
        const char *path = (const char *)a[1];
        const struct open_how_v0 *how = (const struct open_how_v0 *)a[2];
        if (how->resolve != 0 && dirfd != AT_FDCWD) {
            while (*path == '/')
                path++;
            if (*path == '\0')
                path = ".";
        }
        return openat(dirfd, path, (int)how->flags, (mode_t)how->mode);
    }
    static long (*real)(long, ...);
    if (real == NULL)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
