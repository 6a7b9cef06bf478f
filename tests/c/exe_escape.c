/* The host-binary escape (CVE-2019-5736 class) against a program that embeds libtong.
 *
 *   exe_escape ROOT BUNDLE
 *
 * BUNDLE's rootfs ships /bin/evil ("#!/proc/self/exe") and the attacker's program at
 * the dynamic loader's path (crates/tong-cli/tests/escapes_loader.c). This program
 * starts the bundle's container through libtong and execs /bin/evil in it. Were the
 * exec'd process a clone of this program at its exec, the kernel would run THIS binary
 * in the container with the attacker's loader, which keeps /proc/self/exe open and
 * appends to it once no process runs it any more: so this program exits right after the
 * exec and leaves the container running; ci/test-c waits, compares this binary's bytes
 * with a copy, then deletes the container (its id is printed on the first line).
 * Exit status: 0 when the container ran and the exec was tried, 1 otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <tong.h>

static int check(enum tong_error_code code, tong_error **err, const char *what)
{
    if (code == TONG_OK)
        return 1;
    fprintf(stderr, "%s: %s\n", what, *err ? tong_error_message(*err) : "?");
    tong_error_free(*err);
    *err = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ROOT BUNDLE\n", argv[0]);
        return 2;
    }
    tong_runtime_options ro = TONG_RUNTIME_OPTIONS_INIT;
    ro.root = argv[1];
    tong_runtime *rt = NULL;
    tong_container *c = NULL;
    tong_error *err = NULL;
    char id[64];
    snprintf(id, sizeof id, "capi-escape-%d", (int)getpid());
    int ok = check(tong_runtime_new(&ro, &rt, &err), &err, "runtime") &&
             check(tong_container_create(rt, id, argv[2], NULL, &c, &err), &err, "create") &&
             check(tong_container_start(c, &err), &err, "start");
    if (ok) {
        printf("%s\n", id);
        int code = -1;
        enum tong_error_code r = tong_container_exec(
            c, "{\"args\": [\"/bin/evil\"], \"env\": [\"PATH=/bin\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}",
            NULL,
            &code, &err);
        /* Refused or run: either way the attacker had its try. */
        printf("exec /bin/evil: %s, exit %d%s%s\n", tong_error_code_name(r), code, err ? ": " : "",
               err ? tong_error_message(err) : "");
        tong_error_free(err);
    } else if (c) {
        check(tong_container_delete(c, TONG_DELETE_FORCE, &err), &err, "delete");
    }
    tong_container_free(c);
    tong_runtime_free(rt);
    return ok ? 0 : 1;
}
