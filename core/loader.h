/* loader: finds plugin files by kind and bare name in the plugin folders,
 * refuses unsafe files, dlopens them and gates them on the ABI version. */
#ifndef EW_CORE_LOADER_H
#define EW_CORE_LOADER_H

#include <edgewatch/plugin.h>
#include <limits.h>
#include <stddef.h>

/* The folders searched, in order: [pipeline] plugin_path, EDGEWATCH_PLUGIN_PATH,
 * then the folder the plugins were installed in. */
typedef struct loader_path {
    char **dirs;
    size_t count;
} loader_path;

typedef struct loaded_plugin {
    void *handle;
    const ew_plugin *desc;
    char path[PATH_MAX];
} loaded_plugin;

/* Builds the search path from the config's plugin_path (may be NULL), the
 * environment and the built-in folder. Returns 0 or -1 (out of memory). */
int loader_path_init(loader_path *lp, const char *config_plugin_path);
void loader_path_free(loader_path *lp);

/* The file name of a plugin: "<kind>_<name>.so". */
void loader_file_name(ew_kind kind, const char *name, char *out, size_t outlen);

/* Finds and opens the plugin of `kind` named `name` (which must be [a-z0-9_]+).
 * Each folder is searched for the file directly and in a sub-folder named like
 * the plugin (the build tree's layout). Refuses files or folders writable by
 * other users, a missing entry symbol, a descriptor of another ABI major or of a
 * newer minor than (host_major, host_minor), a kind or name that differs from
 * the file's, missing callbacks and an invalid option table. When the name
 * exists only as another kind, says so. Returns 0 or -1 with err. */
int loader_open(const loader_path *lp, ew_kind kind, const char *name, unsigned host_major,
                unsigned host_minor, loaded_plugin *out, char *err, size_t errlen);

/* Opens one plugin file by path (used by loader_open and `edgewatch plugins`). */
int loader_open_file(const char *path, unsigned host_major, unsigned host_minor, loaded_plugin *out,
                     char *err, size_t errlen);

void loader_close(loaded_plugin *p);

/* Calls `fn` for every loadable plugin in the search path (first one of each
 * kind and name wins); files that fail to load are reported through `bad`. */
typedef void (*loader_list_fn)(void *ctx, const loaded_plugin *p);
typedef void (*loader_bad_fn)(void *ctx, const char *path, const char *why);
void loader_list(const loader_path *lp, loader_list_fn fn, loader_bad_fn bad, void *ctx);

#endif
