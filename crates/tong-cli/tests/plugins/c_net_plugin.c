/* A network plugin written in C against the tong plugin ABI v1, used by the plugin-host
 * tests. Build flags pick its name and its misbehaviour:
 *   -DNAME='"ctest"' -DPRIORITY=5   a working plugin
 *   -DABI_MAJOR=2                   built for another ABI major
 *   -DPROBE_FAILS                   its probe says it cannot work here
 *   -DSETUP_FAILS                   its setup fails (create must undo everything) */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef ABI_MAJOR
#define ABI_MAJOR 1
#endif
#ifndef NAME
#define NAME "ctest"
#endif
#ifndef VERSION
#define VERSION "1.0-c"
#endif
#ifndef PRIORITY
#define PRIORITY 5
#endif

typedef int tong_status;
typedef struct { void *ctx; void (*write)(void *ctx, const uint8_t *data, size_t len); } tong_sink;
typedef struct { const uint8_t *ptr; size_t len; } tong_bytes;

typedef struct {
    size_t struct_size;
    tong_status (*setup)(tong_bytes req, const tong_sink *state_out, const tong_sink *err);
    tong_status (*teardown)(tong_bytes state, const tong_sink *err);
} tong_network_ops;

typedef struct {
    uint32_t abi_major, abi_minor;
    size_t struct_size;
    uint32_t kind, priority;
    const char *name, *version, *description;
    tong_status (*probe)(const tong_sink *reason);
    const void *ops;
} tong_plugin_descriptor;

static void put(const tong_sink *sink, const char *text) {
    if (sink && sink->write)
        sink->write(sink->ctx, (const uint8_t *)text, strlen(text));
}

static tong_status probe(const tong_sink *reason) {
#ifdef PROBE_FAILS
    put(reason, "test plugin: this host lacks the frobnicator");
    return 3;
#else
    (void)reason;
    return 0;
#endif
}

static tong_status setup(tong_bytes req, const tong_sink *state_out, const tong_sink *err) {
    (void)req;
#ifdef SETUP_FAILS
    (void)state_out;
    put(err, "test plugin: setup refused on purpose");
    return 5;
#else
    (void)err;
    put(state_out, "{\"writtenIn\":\"C\"}");
    return 0;
#endif
}

static tong_status teardown(tong_bytes state, const tong_sink *err) {
    (void)state;
    (void)err;
    return 0;
}

static const tong_network_ops OPS = {sizeof(tong_network_ops), setup, teardown};
static const tong_plugin_descriptor DESCRIPTOR = {
    ABI_MAJOR, 0, sizeof(tong_plugin_descriptor), 4 /* network */, PRIORITY,
    NAME, VERSION, "test network plugin written in C", probe, &OPS};

const tong_plugin_descriptor *tong_plugin_entry(uint32_t host_abi_major) {
    (void)host_abi_major;
    return &DESCRIPTOR;
}
