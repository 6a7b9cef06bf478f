/* The isolated cost of tong's exec stub: fork + exec of a program N times, directly and
 * through the stub (sealed memfd, execveat). Usage: stub-cost STUB PROGRAM [N]. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv)
{
	int n = argc > 3 ? atoi(argv[3]) : 2000;
	char buf[65536]; int in = open(argv[1], O_RDONLY); ssize_t len = read(in, buf, sizeof buf);
	double t0 = now();
	int mfd = -1;
	for (int i = 0; i < n; i++) {
		mfd = memfd_create("stub", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		write(mfd, buf, len);
		fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
		if (i < n - 1) close(mfd);
	}
	double prep = (now() - t0) / n;
	int devnull = open("/dev/null", O_WRONLY);
	char *envp[] = {0};
	for (int mode = 0; mode < 2; mode++) {
		double t = now();
		for (int i = 0; i < n; i++) {
			pid_t p = fork();
			if (p == 0) {
				char *direct[] = {argv[2], 0};
				char *stub[] = {argv[2], "99", argv[2], 0};
				dup2(devnull, 99);
				if (mode == 0) execve(argv[2], direct, envp);
				else syscall(SYS_execveat, mfd, "", stub, envp, AT_EMPTY_PATH);
				_exit(126);
			}
			int st; waitpid(p, &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { fprintf(stderr, "child failed\n"); return 1; }
		}
		printf("%s: %.1f us per fork+exec\n", mode ? "through the stub" : "direct", (now() - t) / n * 1e6);
	}
	printf("memfd_create+write+seal: %.1f us\n", prep * 1e6);
	return 0;
}
