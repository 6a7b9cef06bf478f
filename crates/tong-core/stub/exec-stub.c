/*
 * tong's exec stub: the last program a container process runs before its own.
 *
 * Until this stub runs, a container process is a clone of tong (or of the program that
 * embeds libtong), so its /proc/self/exe is that host binary. The child execs this stub
 * from a sealed memfd (execveat, AT_EMPTY_PATH) and the stub execs the container's
 * program: from then on no process of the container has the host binary as its exe, and
 * a `#!/proc/self/exe` script runs this stub, which cannot be written. See
 * docs/security.md, "Escapes: the host binary".
 *
 * argv: [program path, report fd (decimal), program argv...]. The report fd is the
 * child's report pipe, inherited without close-on-exec: the stub marks it close-on-exec
 * and execs the program; when that exec fails it writes a report laid out as tong_abi's
 * ChildError (errno, length, message) and exits 127, as the child itself did before.
 *
 * Built freestanding (-nostdlib -static): raw system calls only, a few KB.
 */
#include <asm/unistd.h>

#define F_SETFD 2
#define FD_CLOEXEC 1
#define MESSAGE_LEN 512

#if defined(__x86_64__)
static long sys3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}
__asm__(".text\n.global _start\n_start:\n"
	"  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call stub_main\n  hlt\n");
#elif defined(__aarch64__)
static long sys3(long n, long a, long b, long c)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
	return x0;
}
__asm__(".text\n.global _start\n_start:\n"
	"  mov x29, #0\n  mov x0, sp\n  bl stub_main\n  brk #0\n");
#else
#error "tong's exec stub supports x86_64 and aarch64"
#endif

struct report {
	int errno_value;
	unsigned int len;
	char message[MESSAGE_LEN];
};

static void __attribute__((noreturn)) stub_exit(int code)
{
	for (;;)
		sys3(__NR_exit_group, code, 0, 0);
}

static void push(struct report *r, const char *s)
{
	while (*s && r->len < MESSAGE_LEN - 1)
		r->message[r->len++] = *s++;
	r->message[r->len] = 0;
}

void __attribute__((noreturn, used)) stub_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	const char *digits;
	long fd = 0;

	/* Run any other way (a script naming /proc/self/exe as its interpreter): leave. */
	if (argc < 3 || !argv[1][0])
		stub_exit(127);
	for (digits = argv[1]; *digits; digits++) {
		if (*digits < '0' || *digits > '9' || fd > 1000000)
			stub_exit(127);
		fd = fd * 10 + (*digits - '0');
	}
	sys3(__NR_fcntl, fd, F_SETFD, FD_CLOEXEC);
	long err = sys3(__NR_execve, (long)argv[0], (long)(argv + 2), (long)envp);

	static struct report r;
	r.errno_value = (int)-err;
	push(&r, "exec ");
	push(&r, argv[0]);
	const char *p = (const char *)&r;
	unsigned long left = sizeof r;
	while (left > 0) {
		long n = sys3(__NR_write, fd, (long)p, (long)left);
		if (n == -4 /* EINTR */)
			continue;
		if (n <= 0)
			break;
		p += n;
		left -= n;
	}
	stub_exit(127);
}
