/* A network plugin written in C against the tong plugin ABI (include/tong_plugin.h), used
 * by the plugin-host tests. Build flags pick its name and its misbehaviour:
 *   -DNAME='"ctest"' -DPRIORITY=5   a working plugin
 *   -DABI_MAJOR=2                   built for another ABI major
 *   -DPROBE_FAILS                   its probe says it cannot work here
 *   -DSETUP_FAILS                   its setup fails (create must undo everything) */
#include <stddef.h>
#include <string.h>

#include "tong_plugin.h"

#ifndef ABI_MAJOR
#define ABI_MAJOR TONG_PLUGIN_ABI_MAJOR
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

static void put(const tong_plugin_sink *sink, const char *text) {
    if (sink && sink->write)
        sink->write(sink->ctx, (const uint8_t *)text, strlen(text));
}

static tong_plugin_status probe(const tong_plugin_sink *reason) {
#ifdef PROBE_FAILS
    put(reason, "test plugin: this host lacks the frobnicator");
    return TONG_PLUGIN_STATUS_UNSUPPORTED;
#else
    (void)reason;
    return TONG_PLUGIN_STATUS_OK;
#endif
}

static tong_plugin_status setup(tong_plugin_bytes req, const tong_plugin_sink *state_out,
                                const tong_plugin_sink *err) {
    (void)req;
#ifdef SETUP_FAILS
    (void)state_out;
    put(err, "test plugin: setup refused on purpose");
    return TONG_PLUGIN_STATUS_FAILED;
#else
    (void)err;
    put(state_out, "{\"writtenIn\":\"C\"}");
    return TONG_PLUGIN_STATUS_OK;
#endif
}

static tong_plugin_status teardown(tong_plugin_bytes state, const tong_plugin_sink *err) {
    (void)state;
    (void)err;
    return TONG_PLUGIN_STATUS_OK;
}

static const tong_plugin_network_ops OPS = {
    .struct_size = sizeof(tong_plugin_network_ops),
    .setup = setup,
    .teardown = teardown,
};
static const tong_plugin_descriptor DESCRIPTOR = {
    .abi_major = ABI_MAJOR,
    /* Built for 1.0 on purpose: a host of a later minor still loads it. A 1.0 or 1.1
       descriptor ends at `ops` (1.2 appended set_warning_sink). */
    .abi_minor = 0,
    .struct_size = offsetof(tong_plugin_descriptor, set_warning_sink),
    .kind = TONG_PLUGIN_KIND_NETWORK,
    .priority = PRIORITY,
    .name = NAME,
    .version = VERSION,
    .description = "test network plugin written in C",
    .probe = probe,
    .ops = &OPS,
};

const tong_plugin_descriptor *tong_plugin_entry(uint32_t host_abi_major) {
    (void)host_abi_major;
    return &DESCRIPTOR;
}
