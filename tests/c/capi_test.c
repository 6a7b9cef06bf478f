/*
 * capi_test: drives libtong through its C ABI with real containers.
 *
 *   capi_test ROOTFS [--require-test-hooks]
 *
 * ROOTFS is a busybox root filesystem (ci/make-bundle DIR makes DIR/rootfs). The test
 * writes its own bundles (config.json files pointing at ROOTFS) and state root under a
 * private temporary directory, and removes them. Checks: versions and extensions,
 * error codes and messages for bad input (NULL pointers, too-small struct_size, invalid
 * config JSON, unknown id, unknown backend, bad flags), outputs untouched on failure,
 * the full lifecycle with stdio pipes (create, state, start, ps, stats, pause, resume,
 * kill, wait, delete), run, list, exec and update, per-container cgroup backends (v1 and v2 in one
 * process), descriptors passed as extra_fds (and nothing else of the caller's), and a
 * deliberate panic coming back as TONG_ERR_PANIC.
 * Prints "ok - ..." / "not ok - ..." lines and exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tong.h>

static int failures;
static int checks;
static char tmpdir[] = "/tmp/tong-capi-test-XXXXXX";
static char root[512];
static const char *rootfs;

static void ok(int cond, const char *fmt, ...)
{
    va_list ap;
    checks++;
    if (!cond)
        failures++;
    printf("%s - ", cond ? "ok" : "not ok");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* Checks a call's code and, on failure, that the error object carries it and a message;
 * frees the error and resets *errp (read here, after the call: C leaves the order in
 * which arguments are evaluated open). */
static int expect(tong_error_code rc, tong_error **errp, tong_error_code want, const char *what)
{
    tong_error *err = *errp;
    int good = rc == want;
    if (rc != TONG_OK) {
        good = good && err != NULL && tong_error_get_code(err) == rc &&
               strlen(tong_error_message(err)) > 0;
    } else {
        good = good && err == NULL;
    }
    ok(good, "%s -> %s (want %s)%s%s", what, tong_error_code_name(rc), tong_error_code_name(want),
       err ? ": " : "", err ? tong_error_message(err) : "");
    tong_error_free(err);
    *errp = NULL;
    return good;
}

static int contains(const char *haystack, const char *needle)
{
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* Writes BUNDLE/config.json running ARGS (a JSON array body) on the shared rootfs. */
/* Makes the bundle directory DIR and opens its config.json for writing (exits on failure). */
static FILE *open_config(const char *dir)
{
    char path[1024];
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    return f;
}

static void write_bundle(const char *dir, const char *args, int with_resources)
{
    FILE *f = open_config(dir);
    fprintf(f,
            "{\"ociVersion\": \"1.0.2\",\n"
            " \"process\": {\"terminal\": false, \"user\": {\"uid\": 0, \"gid\": 0},\n"
            "   \"args\": [%s], \"env\": [\"PATH=/bin\"], \"cwd\": \"/\"},\n"
            " \"root\": {\"path\": \"%s\", \"readonly\": false},\n"
            " \"hostname\": \"capi-test\",\n"
            " \"mounts\": [{\"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\"}],\n"
            " \"linux\": {%s\"namespaces\": [{\"type\": \"pid\"}, {\"type\": \"ipc\"},\n"
            "   {\"type\": \"uts\"}, {\"type\": \"mount\"}]}}\n",
            args, rootfs,
            with_resources ? "\"resources\": {\"pids\": {\"limit\": 32}}, " : "");
    fclose(f);
}

static char *bundle_path(const char *name)
{
    static char buf[4][1024];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 1024, "%s/%s", tmpdir, name);
    return p;
}

static void test_versions(void)
{
    ok(strcmp(tong_version(), TONG_VERSION_STRING) == 0, "tong_version() %s == header %s",
       tong_version(), TONG_VERSION_STRING);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", TONG_VERSION_MAJOR, TONG_VERSION_MINOR,
             TONG_VERSION_PATCH);
    ok(strcmp(tong_version(), want) == 0, "version macros match tong_version()");
    ok(tong_abi_version() == TONG_ABI_VERSION, "tong_abi_version() == TONG_ABI_VERSION (%u)",
       tong_abi_version());
    ok(tong_has_api_extension("lifecycle") == 1, "has extension lifecycle");
    ok(tong_has_api_extension("backend-choice") == 1, "has extension backend-choice");
    ok(tong_has_api_extension("no-such-extension") == 0, "no extension no-such-extension");
    ok(tong_has_api_extension(NULL) == 0, "has_api_extension(NULL) == 0");
    ok(strcmp(tong_error_code_name(TONG_ERR_NOT_FOUND), "TONG_ERR_NOT_FOUND") == 0,
       "tong_error_code_name");
    ok(strcmp(tong_error_code_name(12345), "TONG_ERR_UNKNOWN") == 0, "unknown code name");
    ok(tong_error_get_code(NULL) == TONG_ERR_INVALID_ARGUMENT && tong_error_message(NULL)[0] == 0,
       "error accessors accept NULL");
    tong_error_free(NULL);
    tong_string_free(NULL);
    tong_container_free(NULL);
    tong_runtime_free(NULL);
}

static tong_runtime *make_runtime(void)
{
    tong_runtime *rt = (tong_runtime *)0x1;
    tong_error *err = NULL;

    expect(tong_runtime_new(NULL, NULL, &err), &err, TONG_ERR_INVALID_ARGUMENT, "runtime_new(out=NULL)");
    tong_runtime_options small = TONG_RUNTIME_OPTIONS_INIT;
    small.struct_size = sizeof(size_t);
    err = NULL;
    expect(tong_runtime_new(&small, &rt, &err), &err, TONG_ERR_INVALID_ARGUMENT,
           "runtime_new(struct_size too small)");
    ok(rt == (tong_runtime *)0x1, "runtime out untouched on failure");

    /* A caller newer than the library: larger struct, unknown tail zero -> accepted. */
    struct {
        tong_runtime_options base;
        uint64_t future_field;
    } newer = {TONG_RUNTIME_OPTIONS_INIT, 0};
    newer.base.struct_size = sizeof newer;
    newer.base.root = root;
    err = NULL;
    tong_runtime *rt2 = NULL;
    expect(tong_runtime_new(&newer.base, &rt2, &err), &err, TONG_OK, "runtime_new(newer struct, zero tail)");
    tong_runtime_free(rt2);
    newer.future_field = 1;
    err = NULL;
    expect(tong_runtime_new(&newer.base, &rt2, &err), &err, TONG_ERR_INVALID_ARGUMENT,
           "runtime_new(newer struct, unknown field set)");

    tong_runtime_options opts = TONG_RUNTIME_OPTIONS_INIT;
    opts.root = root;
    err = NULL;
    rt = NULL;
    expect(tong_runtime_new(&opts, &rt, &err), &err, TONG_OK, "runtime_new(root)");
    return rt;
}

static void test_errors(tong_runtime *rt)
{
    tong_error *err = NULL;
    tong_container *c = (tong_container *)0x1;
    char *json = (char *)0x1;
    const char *good = bundle_path("sleeper");

    expect(tong_container_open(rt, "no-such-container", &c, &err), &err, TONG_ERR_NOT_FOUND,
           "open(unknown id)");
    ok(c == (tong_container *)0x1, "container out untouched on failure");
    err = NULL;
    expect(tong_container_open(NULL, "x", &c, &err), &err, TONG_ERR_INVALID_ARGUMENT, "open(rt=NULL)");
    err = NULL;
    expect(tong_container_create(rt, NULL, good, NULL, &c, &err), &err, TONG_ERR_INVALID_ARGUMENT,
           "create(id=NULL)");
    err = NULL;
    expect(tong_container_create(rt, "x", NULL, NULL, &c, &err), &err, TONG_ERR_INVALID_ARGUMENT,
           "create(bundle=NULL)");
    err = NULL;
    expect(tong_container_create(rt, "x", good, NULL, NULL, &err), &err, TONG_ERR_INVALID_ARGUMENT,
           "create(out=NULL)");
    err = NULL;
    expect(tong_container_create(rt, "../escape", good, NULL, &c, &err), &err,
           TONG_ERR_INVALID_ARGUMENT, "create(invalid id)");

    const char *bad = bundle_path("bad-json");
    mkdir(bad, 0700);
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", bad);
    FILE *f = fopen(path, "w");
    fputs("{\"ociVersion\": \"1.0.2\", \"process\": ", f);
    fclose(f);
    err = NULL;
    expect(tong_container_create(rt, "capi-bad-json", bad, NULL, &c, &err), &err,
           TONG_ERR_INVALID_ARGUMENT, "create(invalid config JSON)");

    tong_create_options small = TONG_CREATE_OPTIONS_INIT;
    small.struct_size = 4;
    err = NULL;
    expect(tong_container_create(rt, "capi-small", good, &small, &c, &err), &err,
           TONG_ERR_INVALID_ARGUMENT, "create(struct_size too small)");

    tong_create_options nobackend = TONG_CREATE_OPTIONS_INIT;
    nobackend.backend_cgroup = "no-such-backend";
    err = NULL;
    expect(tong_container_create(rt, "capi-nobackend", good, &nobackend, &c, &err), &err,
           TONG_ERR_PLUGIN, "create(unknown cgroup backend)");
    ok(c == (tong_container *)0x1, "container out untouched after failed creates");

    err = NULL;
    expect(tong_container_start(NULL, &err), &err, TONG_ERR_INVALID_ARGUMENT, "start(NULL)");
    err = NULL;
    expect(tong_container_state(NULL, &json, &err), &err, TONG_ERR_INVALID_ARGUMENT, "state(NULL)");
    err = NULL;
    expect(tong_runtime_list(rt, NULL, &err), &err, TONG_ERR_INVALID_ARGUMENT, "list(json_out=NULL)");
    err = NULL;
    expect(tong_features(NULL, &err), &err, TONG_ERR_INVALID_ARGUMENT, "features(json_out=NULL)");
    ok(json == (char *)0x1, "json out untouched on failure");
    /* err may be NULL: the code alone comes back. */
    ok(tong_container_wait(NULL, NULL, NULL) == TONG_ERR_INVALID_ARGUMENT, "wait(NULL, err=NULL)");

    /* An error the caller has not freed is never overwritten. */
    err = NULL;
    tong_container_start(NULL, &err);
    tong_error *first = err;
    tong_features(NULL, &err);
    ok(err == first, "pending error not overwritten");
    tong_error_free(err);
}

static char *read_all(int fd)
{
    static char buf[4096];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    buf[got] = 0;
    return buf;
}

static void test_lifecycle(tong_runtime *rt)
{
    char id[64];
    snprintf(id, sizeof id, "capi-life-%d", (int)getpid());
    int in[2], out[2];
    if (pipe(in) || pipe(out)) {
        perror("pipe");
        exit(2);
    }
    tong_create_options opts = TONG_CREATE_OPTIONS_INIT;
    opts.stdin_fd = in[0];
    opts.stdout_fd = out[1];
    tong_container *c = NULL;
    tong_error *err = NULL;
    char *json = NULL;
    int code = -1;

    if (!expect(tong_container_create(rt, id, bundle_path("sleeper"), &opts, &c, &err), &err, TONG_OK,
                "create(lifecycle)"))
        return;
    close(in[0]);
    close(out[1]);
    ok(strcmp(tong_container_id(c), id) == 0, "container_id");

    err = NULL;
    expect(tong_container_create(rt, id, bundle_path("sleeper"), NULL, &(tong_container *){NULL}, &err),
           &err, TONG_ERR_ALREADY_EXISTS, "create(same id again)");

    err = NULL;
    expect(tong_container_state(c, &json, &err), &err, TONG_OK, "state(created)");
    ok(contains(json, "\"status\":\"created\""), "status created: %s", json);
    tong_string_free(json);

    err = NULL;
    expect(tong_container_pause(c, &err), &err, TONG_ERR_INVALID_STATE, "pause(created)");
    err = NULL;
    expect(tong_container_start(c, &err), &err, TONG_OK, "start");
    err = NULL;
    expect(tong_container_start(c, &err), &err, TONG_ERR_INVALID_STATE, "start(again)");

    char line[64] = {0};
    ssize_t n = read(out[0], line, sizeof line - 1);
    ok(n > 0 && contains(line, "ready"), "container wrote to our stdout pipe: %s", line);

    json = NULL;
    err = NULL;
    expect(tong_container_state(c, &json, &err), &err, TONG_OK, "state(running)");
    ok(contains(json, "\"status\":\"running\""), "status running");
    tong_string_free(json);

    json = NULL;
    err = NULL;
    expect(tong_container_ps(c, &json, &err), &err, TONG_OK, "ps");
    ok(json != NULL && json[0] == '[' && json[1] != ']', "ps lists pids: %s", json);
    tong_string_free(json);

    json = NULL;
    err = NULL;
    expect(tong_container_stats(c, &json, &err), &err, TONG_OK, "stats");
    ok(json != NULL && json[0] == '{', "stats is a JSON object: %.80s", json);
    tong_string_free(json);

    err = NULL;
    if (expect(tong_container_pause(c, &err), &err, TONG_OK, "pause")) {
        json = NULL;
        tong_container_state(c, &json, NULL);
        ok(contains(json, "\"status\":\"paused\""), "status paused");
        tong_string_free(json);
        err = NULL;
        expect(tong_container_delete(c, 0, &err), &err, TONG_ERR_INVALID_STATE, "delete(paused, no force)");
        err = NULL;
        expect(tong_container_resume(c, &err), &err, TONG_OK, "resume");
    }
    err = NULL;
    expect(tong_container_kill(c, SIGTERM, 0x80, &err), &err, TONG_ERR_INVALID_ARGUMENT, "kill(bad flags)");
    err = NULL;
    expect(tong_container_kill(c, 0, 0, &err), &err, TONG_ERR_INVALID_ARGUMENT, "kill(signal 0)");

    /* Let it exit by itself: a line on stdin makes it exit 7. */
    ok(write(in[1], "bye\n", 4) == 4, "wrote to the container's stdin");
    close(in[1]);
    err = NULL;
    expect(tong_container_wait(c, &code, &err), &err, TONG_OK, "wait");
    ok(code == 7, "exit code 7 (got %d)", code);
    char *rest = read_all(out[0]);
    ok(contains(rest, "got bye"), "container echoed its stdin: %s", rest);
    close(out[0]);

    json = NULL;
    err = NULL;
    expect(tong_container_state(c, &json, &err), &err, TONG_OK, "state(stopped)");
    ok(contains(json, "\"status\":\"stopped\""), "status stopped");
    tong_string_free(json);

    json = NULL;
    err = NULL;
    expect(tong_runtime_list(rt, &json, &err), &err, TONG_OK, "list");
    ok(contains(json, id), "list shows the container");
    tong_string_free(json);

    err = NULL;
    expect(tong_container_kill(c, SIGTERM, 0, &err), &err, TONG_ERR_INVALID_STATE, "kill(stopped)");
    err = NULL;
    expect(tong_container_delete(c, 0, &err), &err, TONG_OK, "delete");
    err = NULL;
    expect(tong_container_delete(c, 0, &err), &err, TONG_ERR_NOT_FOUND, "delete(again)");
    err = NULL;
    expect(tong_container_delete(c, TONG_DELETE_FORCE, &err), &err, TONG_OK, "delete(force, gone)");
    tong_container_free(c);

    tong_container *gone = NULL;
    err = NULL;
    expect(tong_container_open(rt, id, &gone, &err), &err, TONG_ERR_NOT_FOUND, "open(deleted)");
}

static void test_kill_and_run(tong_runtime *rt)
{
    char id[64];
    snprintf(id, sizeof id, "capi-kill-%d", (int)getpid());
    tong_container *c = NULL, *again = NULL;
    tong_error *err = NULL;
    int code = -1;
    int devnull = open("/dev/null", O_RDWR);
    tong_create_options opts = TONG_CREATE_OPTIONS_INIT;
    opts.stdin_fd = devnull;
    opts.stdout_fd = devnull;
    if (!expect(tong_container_create(rt, id, bundle_path("forever"), &opts, &c, &err), &err, TONG_OK,
                "create(forever)"))
        return;
    err = NULL;
    expect(tong_container_open(rt, id, &again, &err), &err, TONG_OK, "open(existing)");
    err = NULL;
    expect(tong_container_start(again, &err), &err, TONG_OK, "start through a second handle");
    tong_container_free(again);
    err = NULL;
    expect(tong_container_delete(c, 0, &err), &err, TONG_ERR_INVALID_STATE, "delete(running, no force)");
    err = NULL;
    expect(tong_container_kill(c, SIGKILL, TONG_KILL_ALL, &err), &err, TONG_OK, "kill(SIGKILL, all)");
    err = NULL;
    expect(tong_container_wait(c, &code, &err), &err, TONG_OK, "wait(killed)");
    ok(code == 128 + SIGKILL, "killed exit code 137 (got %d)", code);
    err = NULL;
    expect(tong_container_wait(c, &code, &err), &err, TONG_ERR_INVALID_STATE, "wait(again)");
    err = NULL;
    expect(tong_container_delete(c, 0, &err), &err, TONG_OK, "delete(killed)");
    tong_container_free(c);

    /* run: create + start + wait + delete. */
    snprintf(id, sizeof id, "capi-run-%d", (int)getpid());
    code = -1;
    err = NULL;
    expect(tong_container_run(rt, id, bundle_path("exit3"), &opts, &code, &err), &err, TONG_OK, "run");
    ok(code == 3, "run exit code 3 (got %d)", code);
    c = NULL;
    err = NULL;
    expect(tong_container_open(rt, id, &c, &err), &err, TONG_ERR_NOT_FOUND, "run deleted its container");

    /* A force delete of a running container. */
    snprintf(id, sizeof id, "capi-force-%d", (int)getpid());
    c = NULL;
    err = NULL;
    if (expect(tong_container_create(rt, id, bundle_path("forever"), &opts, &c, &err), &err, TONG_OK,
               "create(forever 2)")) {
        tong_container_start(c, NULL);
        err = NULL;
        expect(tong_container_delete(c, TONG_DELETE_FORCE, &err), &err, TONG_OK, "delete(force, running)");
        tong_container_free(c);
    }
    close(devnull);
}

/* Two containers in one process on different cgroup and rootfs backends (no
 * linux.resources): both share one rootfs, the overlay one writes only to its layer. */
static void test_backends(tong_runtime *rt)
{
    const char *names[2] = {"v1", "v2"};
    const char *rootfs_names[2] = {"overlay", "chroot"};
    tong_container *c[2] = {NULL, NULL};
    int devnull = open("/dev/null", O_RDWR);
    for (int i = 0; i < 2; i++) {
        char id[64];
        snprintf(id, sizeof id, "capi-cg%s-%d", names[i], (int)getpid());
        tong_create_options opts = TONG_CREATE_OPTIONS_INIT;
        opts.stdin_fd = devnull;
        opts.stdout_fd = devnull;
        opts.backend_cgroup = names[i];
        opts.backend_rootfs = rootfs_names[i];
        tong_error *err = NULL;
        char what[64];
        snprintf(what, sizeof what, "create(cgroup=%s, rootfs=%s)", names[i], rootfs_names[i]);
        expect(tong_container_create(rt, id, bundle_path("forever"), &opts, &c[i], &err), &err, TONG_OK, what);
    }
    for (int i = 0; i < 2; i++) {
        char *json = NULL;
        if (c[i] == NULL)
            continue;
        char want[64];
        snprintf(want, sizeof want, "\"cgroup\":\"%s\"", names[i]);
        tong_container_state(c[i], &json, NULL);
        ok(contains(json, want), "container %s uses %s", tong_container_id(c[i]), want);
        snprintf(want, sizeof want, "\"rootfs\":\"%s\"", rootfs_names[i]);
        ok(contains(json, want), "container %s uses %s", tong_container_id(c[i]), want);
        tong_string_free(json);
        tong_error *err = NULL;
        expect(tong_container_start(c[i], &err), &err, TONG_OK, "start(backend container)");
    }
    for (int i = 0; i < 2; i++) {
        if (c[i] == NULL)
            continue;
        tong_error *err = NULL;
        tong_container_kill(c[i], SIGKILL, 0, NULL);
        int code = -1;
        tong_container_wait(c[i], &code, NULL);
        expect(tong_container_delete(c[i], TONG_DELETE_FORCE, &err), &err, TONG_OK, "delete(backend container)");
        tong_container_free(c[i]);
    }
    close(devnull);
}

static int log_lines;
static void log_sink(void *data, int level, const char *message)
{
    (void)level;
    (void)message;
    (*(int *)data)++;
}

static void test_log(void)
{
    tong_runtime_options opts = TONG_RUNTIME_OPTIONS_INIT;
    opts.root = root;
    opts.log_level = TONG_LOG_DEBUG;
    opts.log_fn = log_sink;
    opts.log_user_data = &log_lines;
    tong_runtime *rt = NULL;
    tong_error *err = NULL;
    expect(tong_runtime_new(&opts, &rt, &err), &err, TONG_OK, "runtime_new(log sink)");
    tong_container *c = NULL;
    tong_container_open(rt, "no-such", &c, NULL);
    ok(log_lines >= 2, "log sink called (%d lines)", log_lines);
    tong_runtime_free(rt);
}

/* The engine's warnings reach the log callback (not stderr): a poststart hook that fails
 * only warns, and the warning comes back at TONG_LOG_WARN. */
static char warnings[4096];
static void warn_sink(void *data, int level, const char *message)
{
    (void)data;
    if (level == TONG_LOG_WARN && strlen(warnings) + strlen(message) + 2 < sizeof warnings) {
        strcat(warnings, message);
        strcat(warnings, "\n");
    }
}

static void test_log_warnings(void)
{
    FILE *f = open_config(bundle_path("failing-poststart"));
    fprintf(f,
            "{\"ociVersion\": \"1.0.2\",\n"
            " \"process\": {\"user\": {\"uid\": 0, \"gid\": 0}, \"args\": [\"sh\", \"-c\", \"exit 0\"],\n"
            "   \"env\": [\"PATH=/bin\"], \"cwd\": \"/\"},\n"
            " \"root\": {\"path\": \"%s\"},\n"
            " \"hooks\": {\"poststart\": [{\"path\": \"/bin/sh\", \"args\": [\"sh\", \"-c\", \"exit 9\"]}]},\n"
            /* /proc as in the other bundles: under valgrind the exec stub is run by path. */
            " \"mounts\": [{\"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\"}],\n"
            " \"linux\": {\"namespaces\": [{\"type\": \"pid\"}, {\"type\": \"mount\"}]}}\n",
            rootfs);
    fclose(f);
    tong_runtime_options opts = TONG_RUNTIME_OPTIONS_INIT;
    opts.root = root;
    opts.log_level = TONG_LOG_WARN;
    opts.log_fn = warn_sink;
    tong_runtime *rt = NULL;
    tong_error *err = NULL;
    expect(tong_runtime_new(&opts, &rt, &err), &err, TONG_OK, "runtime_new(warning sink)");
    tong_create_options copts = TONG_CREATE_OPTIONS_INIT;
    int code = -1;
    expect(tong_container_run(rt, "capi-warn", bundle_path("failing-poststart"), &copts, &code, &err),
           &err, TONG_OK, "run with a failing poststart hook");
    ok(code == 0, "run exit code %d", code);
    ok(contains(warnings, "poststart"), "the poststart warning reached the log callback: %s",
       warnings);
    tong_runtime_free(rt);
}

static void test_panic(int required)
{
    if (!tong_has_api_extension("test-hooks")) {
        ok(!required, "panic hook %s (library built without test-hooks)",
           required ? "MISSING" : "skipped");
        return;
    }
    char *json = (char *)0x1;
    tong_error *err = NULL;
    setenv("TONG_TEST_PANIC", "tong_features", 1);
    tong_error_code rc = tong_features(&json, &err);
    unsetenv("TONG_TEST_PANIC");
    ok(rc == TONG_ERR_PANIC, "deliberate panic -> %s", tong_error_code_name(rc));
    ok(contains(tong_error_message(err), "deliberate panic"), "panic message: %s", tong_error_message(err));
    ok(json == (char *)0x1, "no output after a panic");
    tong_error_free(err);
    json = NULL;
    err = NULL;
    expect(tong_features(&json, &err), &err, TONG_OK, "library still works after a panic");
    ok(contains(json, "ociVersionMin"), "features JSON");
    tong_string_free(json);
}

static int remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

/* Reads a cgroup file of container ID for CONTROLLER's FILE (v1 layout, then v2). */
static char *read_cgroup(const char *controller, const char *id, const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "/sys/fs/cgroup/%s/%s/%s", controller, id, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(path, sizeof path, "/sys/fs/cgroup/%s/%s", id, file);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return NULL;
    char *text = read_all(fd);
    close(fd);
    return text;
}

/* extra_fds: a file and a pipe become the container's 3 and 4; an inheritable
 * descriptor the test does not pass stays out; bad lists are refused by name; a caller
 * of the 1.1 struct (struct_size without extra_fds) passes nothing. */
static void test_extra_fds(tong_runtime *rt)
{
    char path[1100], id[64];
    tong_error *err = NULL;
    int code = -1;
    ok(tong_has_api_extension("extra-fds") == 1, "has extension extra-fds");
    snprintf(path, sizeof path, "%s/passed-file", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("data from the file\n", f);
    fclose(f);
    int file = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "%s/capi-not-passed", tmpdir);
    int marker = open(path, O_WRONLY | O_CREAT, 0600); /* inheritable, as a careless caller's */
    int pipefd[2];
    if (file < 0 || marker < 0 || pipe2(pipefd, O_CLOEXEC)) {
        perror("extra_fds setup");
        exit(2);
    }
    int extra[2] = {file, pipefd[1]};
    tong_create_options opts = TONG_CREATE_OPTIONS_INIT;
    opts.extra_fds = extra;
    opts.extra_fds_len = 2;
    snprintf(id, sizeof id, "capi-fds-%d", (int)getpid());
    expect(tong_container_run(rt, id, bundle_path("extra-fds"), &opts, &code, &err), &err, TONG_OK,
           "run(extra_fds = {file, pipe})");
    close(pipefd[1]);
    char *text = read_all(pipefd[0]);
    close(pipefd[0]);
    ok(code == 0, "extra_fds container exit code 0 (got %d)", code);
    ok(strncmp(text, "data from the file\n", 19) == 0, "the container read the file on fd 3: %s", text);
    ok(contains(text, "fds: 0 1 2 3 4 5\n"), "the container has 0-4 (5 is ls's own): %s", text);
    ok(contains(text, "passed-file") && !contains(text, "capi-not-passed"),
       "the test's other open descriptor is not in the container");

    /* A 1.1 caller: the bytes after its struct_size are not read. */
    int pipe2fd[2];
    if (pipe2(pipe2fd, O_CLOEXEC)) {
        perror("pipe");
        exit(2);
    }
    opts.struct_size = offsetof(tong_create_options, extra_fds);
    opts.extra_fds = (const int *)0x1;
    opts.extra_fds_len = 5;
    opts.stdout_fd = pipe2fd[1];
    snprintf(id, sizeof id, "capi-fds-old-%d", (int)getpid());
    expect(tong_container_run(rt, id, bundle_path("list-fds"), &opts, &code, &err), &err, TONG_OK,
           "run(1.1 struct_size, garbage after it)");
    close(pipe2fd[1]);
    text = read_all(pipe2fd[0]);
    close(pipe2fd[0]);
    ok(contains(text, "fds: 0 1 2 3\n"), "a 1.1 caller passes no extra descriptor: %s", text);

    static int many[1001];
    int bad[2] = {file, -1};
    int closed[1] = {100000};
    struct {
        const int *fds;
        size_t len;
        const char *want, *what;
    } cases[] = {
        {bad, 2, "extra_fds[1] (-1, to be descriptor 4) is negative", "create(extra_fds with -1)"},
        {closed, 1, "extra_fds[0] (100000, to be descriptor 3) is not an open descriptor",
         "create(extra_fds with a closed descriptor)"},
        {NULL, 2, "extra_fds is NULL", "create(extra_fds NULL, len 2)"},
        {many, 1001, "at most 1000", "create(1001 extra_fds)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tong_create_options o = TONG_CREATE_OPTIONS_INIT;
        tong_container *c = NULL;
        o.extra_fds = cases[i].fds;
        o.extra_fds_len = cases[i].len;
        snprintf(id, sizeof id, "capi-fds-bad-%d", (int)getpid());
        tong_error_code rc = tong_container_create(rt, id, bundle_path("list-fds"), &o, &c, &err);
        ok(rc == TONG_ERR_INVALID_ARGUMENT && err != NULL && contains(tong_error_message(err), cases[i].want),
           "%s -> %s: %s", cases[i].what, tong_error_code_name(rc), err ? tong_error_message(err) : "");
        tong_error_free(err);
        err = NULL;
        tong_container_free(c);
    }
    close(file);
    close(marker);
}

/* exec and update on a running container. */
static void test_exec_and_update(tong_runtime *rt)
{
    char id[64];
    snprintf(id, sizeof id, "capi-exec-%d", (int)getpid());
    tong_container *c = NULL;
    tong_error *err = NULL;
    if (!expect(tong_container_create(rt, id, bundle_path("forever"), NULL, &c, &err), &err, TONG_OK,
                "create(exec)"))
        return;
    expect(tong_container_start(c, &err), &err, TONG_OK, "start(exec)");
    ok(tong_has_api_extension("exec") == 1 && tong_has_api_extension("update") == 1,
       "has extensions exec and update");

    int out[2];
    if (pipe(out)) {
        perror("pipe");
        exit(2);
    }
    tong_exec_options eo = TONG_EXEC_OPTIONS_INIT;
    eo.stdout_fd = out[1];
    int code = -1;
    expect(tong_container_exec(c,
                               "{\"args\": [\"sh\", \"-c\", \"echo host=$(hostname) pid1=$(cat /proc/1/comm); exit 5\"],"
                               " \"env\": [\"PATH=/bin\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}",
                               &eo, &code, &err),
           &err, TONG_OK, "exec");
    close(out[1]);
    char *text = read_all(out[0]);
    close(out[0]);
    ok(code == 5, "exec returns the process's status 5 (got %d)", code);
    ok(contains(text, "host=capi-test pid1=sleep"), "exec'd process sees the container: %s", text);

    /* exec passes extra descriptors too: a pipe becomes the process's 3. */
    if (pipe2(out, O_CLOEXEC)) {
        perror("pipe");
        exit(2);
    }
    eo = (tong_exec_options)TONG_EXEC_OPTIONS_INIT;
    eo.extra_fds = &out[1];
    eo.extra_fds_len = 1;
    expect(tong_container_exec(c,
                               "{\"args\": [\"sh\", \"-c\", \"echo on fd 3 >&3\"],"
                               " \"env\": [\"PATH=/bin\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}",
                               &eo, &code, &err),
           &err, TONG_OK, "exec(extra_fds = {pipe})");
    close(out[1]);
    text = read_all(out[0]);
    close(out[0]);
    ok(strcmp(text, "on fd 3\n") == 0, "the exec'd process wrote on fd 3: %s", text);

    code = -1;
    expect(tong_container_exec(c, "{\"args\": [\"sh\", ", NULL, &code, &err), &err, TONG_ERR_INVALID_ARGUMENT,
           "exec(invalid JSON)");
    ok(code == -1, "exit code untouched on failure");
    expect(tong_container_exec(c, NULL, NULL, &code, &err), &err, TONG_ERR_INVALID_ARGUMENT, "exec(NULL process)");
    expect(tong_container_exec(c, "{\"args\": [\"no-such-program\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}", NULL, &code, &err), &err,
           TONG_ERR_CONTAINER, "exec(missing program)");
    expect(tong_container_exec(c, "{\"args\": [\"sh\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}, \"terminal\": true}", NULL, &code, &err),
           &err, TONG_ERR_INVALID_ARGUMENT, "exec(terminal without console socket)");
    tong_exec_options small = TONG_EXEC_OPTIONS_INIT;
    small.struct_size = 4;
    expect(tong_container_exec(c, "{\"args\": [\"true\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}", &small, &code, &err), &err,
           TONG_ERR_INVALID_ARGUMENT, "exec(struct_size too small)");
    eo = (tong_exec_options)TONG_EXEC_OPTIONS_INIT;
    eo.detach = 1;
    code = -1;
    expect(tong_container_exec(c, "{\"args\": [\"sleep\", \"100\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}", &eo, &code, &err), &err,
           TONG_OK, "exec(detach)");
    ok(code == 0, "detached exec returns 0");
    char *json = NULL;
    tong_container_ps(c, &json, NULL);
    ok(json != NULL && strchr(json, ',') != NULL, "ps shows the detached process too: %s", json);
    tong_string_free(json);

    expect(tong_container_update(c, "{\"pids\": {\"limit\": 9}}", &err), &err, TONG_OK, "update(pids 9)");
    char *limit = read_cgroup("pids", id, "pids.max");
    ok(limit != NULL && strncmp(limit, "9\n", 2) == 0, "pids.max is 9 on the host: %s", limit);
    expect(tong_container_update(c, "[1]", &err), &err, TONG_ERR_INVALID_ARGUMENT, "update(not an object)");
    expect(tong_container_update(c, "{\"pids\": ", &err), &err, TONG_ERR_INVALID_ARGUMENT,
           "update(invalid JSON)");
    expect(tong_container_update(c, NULL, &err), &err, TONG_ERR_INVALID_ARGUMENT, "update(NULL)");

    expect(tong_container_delete(c, TONG_DELETE_FORCE, &err), &err, TONG_OK, "delete(exec, force)");
    expect(tong_container_exec(c, "{\"args\": [\"true\"], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}", NULL, &code, &err), &err,
           TONG_ERR_NOT_FOUND, "exec(deleted)");
    tong_container_free(c);
}

/* The network namespace pool: fill, a create that takes from it, refill by the embedder
 * (tong_pool_fill with a negative target), drain; bad arguments. */
static void test_pool(tong_runtime *rt)
{
    char id[64], path[1024];
    snprintf(id, sizeof id, "capi-pool-%d", (int)getpid());
    tong_error *err = NULL;
    char *json = NULL;

    ok(tong_has_api_extension("pool") == 1, "extension pool");
    expect(tong_pool_status(rt, NULL, &err), &err, TONG_ERR_INVALID_ARGUMENT, "pool_status(json_out=NULL)");
    expect(tong_pool_drain(NULL, &err), &err, TONG_ERR_INVALID_ARGUMENT, "pool_drain(rt=NULL)");
    expect(tong_pool_status(rt, &json, &err), &err, TONG_OK, "pool_status(no pool)");
    ok(contains(json, "\"netns_target\":0,\"netns_ready\":0"), "no pool: %s", json);
    tong_string_free(json);
    json = NULL;
    if (!expect(tong_pool_fill(rt, 1, &json, &err), &err, TONG_OK, "pool_fill(1)"))
        return;
    ok(contains(json, "\"netns_target\":1,\"netns_ready\":1"), "filled: %s", json);
    tong_string_free(json);
    json = NULL;

    /* The sleeper bundle with a network namespace. */
    char *net = bundle_path("net-sleeper");
    write_bundle(net, "\"sleep\", \"1000\"", 0);
    snprintf(path, sizeof path, "%s/config.json", net);
    FILE *f = fopen(path, "r+");
    char config[4096] = {0};
    size_t n = f ? fread(config, 1, sizeof config - 1, f) : 0;
    char *pid_ns = strstr(config, "{\"type\": \"pid\"}");
    if (f == NULL || n == 0 || pid_ns == NULL) {
        ok(0, "write the net-sleeper bundle");
        if (f)
            fclose(f);
        return;
    }
    char patched[4200];
    snprintf(patched, sizeof patched, "%.*s{\"type\": \"network\"}, %s", (int)(pid_ns - config), config,
             pid_ns);
    rewind(f);
    fputs(patched, f);
    fclose(f);

    tong_container *c = NULL;
    if (expect(tong_container_create(rt, id, net, NULL, &c, &err), &err, TONG_OK, "create(pooled netns)")) {
        expect(tong_pool_status(rt, &json, &err), &err, TONG_OK, "pool_status(taken)");
        ok(contains(json, "\"netns_ready\":0"), "the container took it: %s", json);
        tong_string_free(json);
        json = NULL;
        expect(tong_container_delete(c, TONG_DELETE_FORCE, &err), &err, TONG_OK, "delete(pooled)");
        tong_container_free(c);
    }
    expect(tong_pool_fill(rt, -1, NULL, &err), &err, TONG_OK, "pool_fill(keep target)");
    expect(tong_pool_status(rt, &json, &err), &err, TONG_OK, "pool_status(refilled)");
    ok(contains(json, "\"netns_target\":1,\"netns_ready\":1"), "refilled: %s", json);
    tong_string_free(json);
    json = NULL;
    expect(tong_pool_drain(rt, &err), &err, TONG_OK, "pool_drain");
    snprintf(path, sizeof path, "%s/-pool", root);
    ok(access(path, F_OK) != 0, "drained: no %s", path);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s ROOTFS [--require-test-hooks]\n", argv[0]);
        return 2;
    }
    rootfs = argv[1];
    int require_hooks = argc > 2 && strcmp(argv[2], "--require-test-hooks") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(root, sizeof root, "%s/state", tmpdir);
    write_bundle(bundle_path("sleeper"), "\"sh\", \"-c\", \"echo ready; read x; echo got $x; exit 7\"", 0);
    write_bundle(bundle_path("forever"), "\"sleep\", \"1000\"", 0);
    write_bundle(bundle_path("exit3"), "\"sh\", \"-c\", \"exit 3\"", 1);
    write_bundle(bundle_path("extra-fds"),
                 "\"sh\", \"-c\", \"cat <&3 >&4; echo fds: $(ls /proc/self/fd) >&4;"
                 " ls -l /proc/self/fd/ >&4 2>/dev/null\"", 0);
    write_bundle(bundle_path("list-fds"), "\"sh\", \"-c\", \"echo fds: $(ls /proc/self/fd)\"", 0);

    test_versions();
    tong_runtime *rt = make_runtime();
    if (rt != NULL) {
        test_errors(rt);
        test_lifecycle(rt);
        test_kill_and_run(rt);
        test_exec_and_update(rt);
        test_extra_fds(rt);
        test_backends(rt);
        if (geteuid() == 0)
            test_pool(rt);
        else
            printf("SKIP test_pool: only root can fill a pool of network namespaces\n");
        char *json = NULL;
        tong_runtime_list(rt, &json, NULL);
        ok(json != NULL && strcmp(json, "[]") == 0, "nothing left in the state root: %s", json);
        tong_string_free(json);
        tong_runtime_free(rt);
    }
    test_log();
    test_log_warnings();
    test_panic(require_hooks);

    remove_tree(tmpdir);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
