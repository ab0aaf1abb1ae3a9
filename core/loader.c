/* loader: locates, vets and dlopens plugin shared objects. */
#include "loader.h"

#include "graph.h"
#include "options.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef EW_PLUGIN_DIR
#define EW_PLUGIN_DIR "/usr/local/lib/edgewatch/plugins"
#endif

static int s_add_dirs(loader_path *lp, const char *colon_list)
{
    if (!colon_list || !*colon_list)
        return 0;
    char *copy = strdup(colon_list);
    if (!copy)
        return -1;
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        char **d = realloc(lp->dirs, (lp->count + 1) * sizeof *d);
        if (!d || !(d[lp->count] = strdup(tok))) {
            if (d)
                lp->dirs = d;
            rc = -1;
            break;
        }
        lp->dirs = d;
        lp->count++;
    }
    free(copy);
    return rc;
}

int loader_path_init(loader_path *lp, const char *config_plugin_path)
{
    memset(lp, 0, sizeof *lp);
    if (s_add_dirs(lp, config_plugin_path) < 0 || s_add_dirs(lp, getenv("EDGEWATCH_PLUGIN_PATH")) < 0 ||
        s_add_dirs(lp, EW_PLUGIN_DIR) < 0) {
        loader_path_free(lp);
        return -1;
    }
    return 0;
}

void loader_path_free(loader_path *lp)
{
    for (size_t i = 0; i < lp->count; i++)
        free(lp->dirs[i]);
    free(lp->dirs);
    memset(lp, 0, sizeof *lp);
}

void loader_file_name(ew_kind kind, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s_%s.so", graph_kind_name(kind), name);
}

/* Refuses a file or folder that another user could replace or change, as
 * OpenSSH's safe_path does: it must be owned by root or by the user we run as,
 * and writable by neither its group nor every user. A folder above the
 * plugin's own folder may be writable by all when it is sticky and owned by
 * root (like /tmp): others cannot rename what is not theirs there. `via` is
 * the path asked for, named when it differs from the path checked. */
static int s_check_safe(const char *checked, const char *via, const struct stat *st, bool ancestor,
                        char *err, size_t errlen)
{
    bool dir = S_ISDIR(st->st_mode);
    char from[PATH_MAX + 20] = "";
    if (strcmp(checked, via) != 0)
        snprintf(from, sizeof from, " (%s %s)", dir ? "holding" : "linked from", via);
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        snprintf(err, errlen,
                 "refusing plugin %s %s%s: it is owned by user %u, neither root nor the user edgewatch "
                 "runs as (%u), who could change it; fix with: chown root %s",
                 dir ? "folder" : "file", checked, from, (unsigned)st->st_uid, (unsigned)geteuid(), checked);
        return -1;
    }
    if (!(st->st_mode & (S_IWOTH | S_IWGRP)))
        return 0;
    if (ancestor && (st->st_mode & S_ISVTX) && st->st_uid == 0)
        return 0;
    snprintf(err, errlen,
             "refusing plugin %s %s%s: it is writable by %s (mode %04o), so they could run code in "
             "edgewatch; fix with: chmod go-w %s",
             dir ? "folder" : "file", checked, from, (st->st_mode & S_IWOTH) ? "every user" : "its group",
             (unsigned)(st->st_mode & 07777), checked);
    return -1;
}

/* Resolves every symlink, then checks the file through its open descriptor
 * (what is checked is what is opened) and each folder up to the root. Puts
 * the resolved path in real for dlopen: its folders are safe, so nobody else
 * can swap the file between the check and the load. */
static int s_vet(const char *path, char *real, char *err, size_t errlen)
{
    if (!realpath(path, real)) {
        snprintf(err, errlen, "cannot read plugin %s: %s", path, strerror(errno));
        return -1;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot read plugin %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "plugin %s is not a regular file", path);
        return -1;
    }
    if (s_check_safe(real, path, &st, false, err, errlen) < 0)
        return -1;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", real);
    for (bool ancestor = false;; ancestor = true) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            break;
        *(slash == dir ? slash + 1 : slash) = '\0';
        if (lstat(dir, &st) < 0) {
            snprintf(err, errlen, "cannot check plugin folder %s (holding %s): %s", dir, path, strerror(errno));
            return -1;
        }
        if (s_check_safe(dir, path, &st, ancestor, err, errlen) < 0)
            return -1;
        if (slash == dir)
            break;
    }
    return 0;
}

static const char *s_kind_or_null(ew_kind k)
{
    return (k == EW_KIND_SOURCE || k == EW_KIND_DETECTOR || k == EW_KIND_SINK) ? graph_kind_name(k) : NULL;
}

/* Callbacks each kind must provide. */
static const char *s_missing_callback(const ew_plugin *d)
{
    if (!d->init)
        return "init";
    switch (d->kind) {
    case EW_KIND_SOURCE: return d->produce ? NULL : "produce";
    case EW_KIND_DETECTOR: return d->process ? NULL : "process";
    case EW_KIND_SINK: return d->consume ? NULL : "consume";
    }
    return NULL;
}

int loader_open_file(const char *path, unsigned host_major, unsigned host_minor, loaded_plugin *out,
                     char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char real[PATH_MAX];
    if (s_vet(path, real, err, errlen) < 0)
        return -1;
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "cannot load plugin %s: %s", path, dlerror());
        return -1;
    }
    ew_plugin_entry_fn entry;
    *(void **)(&entry) = dlsym(h, EW_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        snprintf(err, errlen, "%s is not an edgewatch plugin: it exports no %s() (define it with EW_PLUGIN_EXPORT)",
                 path, EW_PLUGIN_ENTRY_SYMBOL);
        dlclose(h);
        return -1;
    }
    const ew_plugin *d = entry();
    if (!d) {
        snprintf(err, errlen, "plugin %s returned no descriptor from %s()", path, EW_PLUGIN_ENTRY_SYMBOL);
        dlclose(h);
        return -1;
    }
    if (d->abi_major != host_major) {
        snprintf(err, errlen,
                 "plugin %s was built for plugin ABI %u.%u, but this edgewatch provides ABI %u.%u: "
                 "majors differ, so it is not binary compatible; rebuild the plugin against the "
                 "edgewatch-plugin SDK of this version",
                 path, d->abi_major, d->abi_minor, host_major, host_minor);
        dlclose(h);
        return -1;
    }
    if (d->abi_minor > host_minor) {
        snprintf(err, errlen,
                 "plugin %s needs plugin ABI %u.%u, newer than the ABI %u.%u of this edgewatch: "
                 "upgrade edgewatch or rebuild the plugin against this version's SDK",
                 path, d->abi_major, d->abi_minor, host_major, host_minor);
        dlclose(h);
        return -1;
    }
    if (d->struct_size < offsetof(ew_plugin, destroy) + sizeof d->destroy) {
        snprintf(err, errlen, "plugin %s has a descriptor of %u bytes, smaller than ABI %u.%u's; rebuild it",
                 path, d->struct_size, d->abi_major, d->abi_minor);
        dlclose(h);
        return -1;
    }
    if (!s_kind_or_null(d->kind) || !d->name || !d->name[0] || strlen(d->name) > 31) {
        snprintf(err, errlen, "plugin %s has an invalid kind (%d), or a name that is empty or longer than 31 characters", path, (int)d->kind);
        dlclose(h);
        return -1;
    }
    const char *missing = s_missing_callback(d);
    if (missing) {
        snprintf(err, errlen, "plugin %s (%s %s) does not provide the %s callback", path,
                 graph_kind_name(d->kind), d->name, missing);
        dlclose(h);
        return -1;
    }
    char why[300];
    if (options_check_table(d->options, d->config_size, why, sizeof why) < 0) {
        snprintf(err, errlen, "plugin %s has a broken option table: %s", path, why);
        dlclose(h);
        return -1;
    }
    out->handle = h;
    out->desc = d;
    snprintf(out->path, sizeof out->path, "%s", path);
    return 0;
}

/* Looks for the file in each folder, directly and one level down. */
static int s_locate(const loader_path *lp, ew_kind kind, const char *name, char *path, size_t pathlen)
{
    char file[128];
    loader_file_name(kind, name, file, sizeof file);
    for (size_t i = 0; i < lp->count; i++) {
        snprintf(path, pathlen, "%s/%s", lp->dirs[i], file);
        if (access(path, F_OK) == 0)
            return 0;
        snprintf(path, pathlen, "%s/%s/%s", lp->dirs[i], name, file);
        if (access(path, F_OK) == 0)
            return 0;
    }
    return -1;
}

int loader_open(const loader_path *lp, ew_kind kind, const char *name, unsigned host_major,
                unsigned host_minor, loaded_plugin *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out); /* like loader_open_file: safe to loader_close after any failure */
    char path[PATH_MAX];
    if (s_locate(lp, kind, name, path, sizeof path) < 0) {
        static const ew_kind kinds[] = {EW_KIND_SOURCE, EW_KIND_DETECTOR, EW_KIND_SINK};
        for (size_t k = 0; k < 3; k++) {
            if (kinds[k] != kind && s_locate(lp, kinds[k], name, path, sizeof path) == 0) {
                snprintf(err, errlen, "plugin \"%s\" is a %s, not a %s: use it in a [%s.NAME] section",
                         name, graph_kind_name(kinds[k]), graph_kind_name(kind), graph_kind_name(kinds[k]));
                return -1;
            }
        }
        char file[128];
        loader_file_name(kind, name, file, sizeof file);
        size_t used = (size_t)snprintf(err, errlen, "no %s plugin \"%s\" (file %s) in:", graph_kind_name(kind),
                                       name, file);
        for (size_t i = 0; i < lp->count && used < errlen; i++)
            used += (size_t)snprintf(err + used, errlen - used, " %s", lp->dirs[i]);
        if (used < errlen)
            snprintf(err + used, errlen - used,
                     "; run `edgewatch plugins` to list what is installed, or add its folder to plugin_path");
        return -1;
    }
    if (loader_open_file(path, host_major, host_minor, out, err, errlen) < 0)
        return -1;
    if (out->desc->kind != kind || strcmp(out->desc->name, name) != 0) {
        snprintf(err, errlen, "plugin file %s declares itself as %s \"%s\", not %s \"%s\"", path,
                 graph_kind_name(out->desc->kind), out->desc->name, graph_kind_name(kind), name);
        loader_close(out);
        return -1;
    }
    return 0;
}

void loader_close(loaded_plugin *p)
{
    if (p && p->handle)
        dlclose(p->handle);
    if (p)
        memset(p, 0, sizeof *p);
}

/* Whether `file` looks like "<kind>_<name>.so"; fills kind and name. */
static int s_parse_file_name(const char *file, ew_kind *kind, char *name, size_t namelen)
{
    static const ew_kind kinds[] = {EW_KIND_SOURCE, EW_KIND_DETECTOR, EW_KIND_SINK};
    size_t flen = strlen(file);
    if (flen < 4 || strcmp(file + flen - 3, ".so") != 0)
        return -1;
    for (size_t k = 0; k < 3; k++) {
        const char *kn = graph_kind_name(kinds[k]);
        size_t kl = strlen(kn);
        if (strncmp(file, kn, kl) == 0 && file[kl] == '_' && flen - kl - 4 > 0 && flen - kl - 4 < namelen) {
            memcpy(name, file + kl + 1, flen - kl - 4);
            name[flen - kl - 4] = '\0';
            *kind = kinds[k];
            return 0;
        }
    }
    return -1;
}

typedef struct s_seen {
    char (*keys)[80];
    size_t count;
} s_seen;

static int s_seen_add(s_seen *seen, ew_kind kind, const char *name)
{
    char key[80];
    snprintf(key, sizeof key, "%d:%s", (int)kind, name);
    for (size_t i = 0; i < seen->count; i++)
        if (strcmp(seen->keys[i], key) == 0)
            return 0;
    char(*k)[80] = realloc(seen->keys, (seen->count + 1) * sizeof *k);
    if (!k)
        return 0;
    seen->keys = k;
    memcpy(seen->keys[seen->count++], key, sizeof key);
    return 1;
}

static void s_list_dir(const char *dir, int depth, s_seen *seen, loader_list_fn fn, loader_bad_fn bad,
                       void *ctx)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    closedir(d);
    for (int i = 0; i < n; i++) {
        const char *fname = ents[i]->d_name;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        ew_kind kind;
        char name[64];
        struct stat st;
        if (fname[0] != '.' && depth == 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            s_list_dir(path, 1, seen, fn, bad, ctx);
        } else if (s_parse_file_name(fname, &kind, name, sizeof name) == 0 && s_seen_add(seen, kind, name)) {
            loaded_plugin p;
            char err[600];
            if (loader_open_file(path, EW_ABI_MAJOR, EW_ABI_MINOR, &p, err, sizeof err) == 0) {
                fn(ctx, &p);
                loader_close(&p);
            } else if (bad) {
                bad(ctx, path, err);
            }
        }
        free(ents[i]);
    }
    free(ents);
}

void loader_list(const loader_path *lp, loader_list_fn fn, loader_bad_fn bad, void *ctx)
{
    s_seen seen = {0};
    for (size_t i = 0; i < lp->count; i++)
        s_list_dir(lp->dirs[i], 0, &seen, fn, bad, ctx);
    free(seen.keys);
}
