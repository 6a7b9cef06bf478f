/*
 * run-container: runs one container through its whole lifecycle with libtong.
 *
 *   cc -o run-container run-container.c $(pkg-config --cflags --libs tong)
 *   ./run-container BUNDLE [ROOT]
 *
 * BUNDLE is an OCI bundle directory (config.json + rootfs, e.g. from ci/make-bundle);
 * ROOT is the state root (default: a fresh directory under /tmp, removed at the end).
 * Steps: features, create, state, start, ps, wait, state, delete; exits with the
 * container's exit code, or 1 (and a message) when a call fails.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tong.h>


static int report(const char *what, tong_error_code rc, tong_error *err)
{
    if (rc == TONG_OK)
        return 0;
    fprintf(stderr, "run-container: %s: %s: %s\n", what, tong_error_code_name(rc),
            tong_error_message(err));
    tong_error_free(err);
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s BUNDLE [ROOT]\n", argv[0]);
        return 2;
    }
    const char *bundle = argv[1];
    char tmp_root[] = "/tmp/tong-example-XXXXXX";
    const char *root = argc == 3 ? argv[2] : mkdtemp(tmp_root);
    if (root == NULL) {
        perror("mkdtemp");
        return 1;
    }
    char id[64];
    snprintf(id, sizeof id, "example-c-%d", (int)getpid());

    printf("libtong %s (C ABI %u, header %s)\n", tong_version(), tong_abi_version(),
           TONG_VERSION_STRING);

    int status = 1, exit_code = -1;
    tong_runtime *rt = NULL;
    tong_container *c = NULL;
    tong_error *err = NULL;
    char *json = NULL;

    tong_runtime_options ropts = TONG_RUNTIME_OPTIONS_INIT;
    ropts.root = root;
    if (report("tong_runtime_new", tong_runtime_new(&ropts, &rt, &err), err))
        goto out;

    if (report("tong_features", tong_features(&json, &err), err))
        goto out;
    printf("features: %.60s...\n", json);
    tong_string_free(json);
    json = NULL;

    tong_create_options copts = TONG_CREATE_OPTIONS_INIT;
    if (report("tong_container_create", tong_container_create(rt, id, bundle, &copts, &c, &err), err))
        goto out;
    if (report("tong_container_state", tong_container_state(c, &json, &err), err))
        goto out;
    printf("created: %s\n", json);
    tong_string_free(json);
    json = NULL;

    if (report("tong_container_start", tong_container_start(c, &err), err))
        goto out;
    /* The process may already be gone; ps is informative only. */
    if (tong_container_ps(c, &json, NULL) == TONG_OK) {
        printf("processes: %s\n", json);
        tong_string_free(json);
        json = NULL;
    }
    if (report("tong_container_wait", tong_container_wait(c, &exit_code, &err), err))
        goto out;
    if (report("tong_container_state", tong_container_state(c, &json, &err), err))
        goto out;
    printf("after exit (code %d): %s\n", exit_code, json);
    tong_string_free(json);
    json = NULL;

    if (report("tong_container_delete", tong_container_delete(c, 0, &err), err))
        goto out;
    printf("deleted %s\n", tong_container_id(c));
    status = exit_code;

out:
    if (status == 1 && c != NULL) /* failed half-way: leave nothing behind */
        tong_container_delete(c, TONG_DELETE_FORCE, NULL);
    tong_container_free(c);
    tong_runtime_free(rt);
    if (argc == 2) {
        /* The last delete leaves the root empty, as runc does. */
        if (rmdir(tmp_root) != 0)
            perror(tmp_root);
    }
    return status;
}
