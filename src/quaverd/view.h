/*
 * A sandbox's view of the filesystem: the mount table that makes up what a
 * process inside the sandbox sees, and a resolver that walks a path inside
 * that view as strictly as openat2(RESOLVE_IN_ROOT) would inside one tree.
 *
 * The toolbox's file API resolves every path here, and the runtime (a later
 * issue) builds the sandbox's mount namespace from the same table, so a
 * file seen through the API is the file a process sees.
 *
 * The table:
 *   /                 STATE/sandboxes/ID/root              read-write
 *   /usr              host /usr                            read-only
 *   MOUNTPATH         STATE/volumes/VID/data[/SUBPATH]     read-write (one per volume)
 *
 * Resolution never leaves the view: every component is opened with
 * O_PATH|O_NOFOLLOW relative to the directory fd before it, symlinks are
 * read and followed by the resolver itself (absolute targets restart at the
 * view's root, at most VIEW_MAX_LINKS of them), ".." pops the walked stack
 * (so it never climbs above the root nor out of a mount's source: from a
 * mount's root it goes to the mount point's parent, as in a real
 * namespace), and a walked view path equal to a mount point crosses into
 * that mount's source.
 */
#ifndef QUAVERD_VIEW_H
#define QUAVERD_VIEW_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "store.h"

#define VIEW_MAX_MOUNTS 32
#define VIEW_MAX_LINKS 40
/* The sandbox user's home and the toolbox's work dir. */
#define VIEW_HOME "/home/daytona"
/* The uid/gid the sandbox user has inside the sandbox (daytona). */
#define VIEW_USER_ID 1000

enum view_mount_kind {
	VIEW_MOUNT_ROOT,   /* the sandbox's own tree */
	VIEW_MOUNT_SYSTEM, /* a host directory shared read-only (/usr) */
	VIEW_MOUNT_VOLUME, /* a volume's data (or a subpath of it) */
};

struct view_mount {
	enum view_mount_kind kind;
	char *path;	   /* in the view: "/" or absolute without "." ".." "//", no trailing '/' */
	char *source;	   /* host directory, for humans and logs: base + "/" + subpath */
	char *source_base; /* a host directory quaverd trusts (state dir, /usr) */
	char *source_rel;  /* "" or a relative path walked beneath source_base without symlinks */
	bool read_only;
	char *volume_id; /* VIEW_MOUNT_VOLUME: the volume's id */
	int fd;		 /* O_PATH fd of the source, opened by view_build */
};

struct view {
	char sandbox_id[STORE_ID_LEN + 1];
	char state_dir[PATH_MAX];
	size_t nmounts;
	struct view_mount mounts[VIEW_MAX_MOUNTS]; /* [0] is "/"; later entries shadow earlier */
};

/* What view_build could not do: a sentence for the user. */
struct view_err {
	char msg[512];
};

/*
 * Builds the view of a started sandbox (by id or name): its mount table,
 * with every source opened (O_PATH, subpaths walked without following a
 * symlink). Missing mount points are created in the sandbox's root as
 * empty directories (as bubblewrap would). -ENOENT: unknown sandbox;
 * -EINVAL: not started (err says its state); other -errno: a source cannot
 * be opened. view_free releases it.
 */
int view_build(struct store *st, const char *sandbox_id, struct view *out, struct view_err *err);
void view_free(struct view *v);

/*
 * Opens a mount's source as view_build does (O_PATH|O_DIRECTORY, never
 * following a symlink below source_base). For the runtime: bind it through
 * /proc/self/fd or bubblewrap's --bind-fd rather than by path.
 */
int view_open_source(const struct view_mount *m);

/* The mount whose mount point is exactly @vpath, or -1. */
int view_mount_at(const struct view *v, const char *vpath);

/* Resolution flags */
enum {
	VIEW_NOFOLLOW = 1 << 0, /* the last component itself when it is a symlink */
	VIEW_MKDIRS = 1 << 1,	/* create missing directories on the way (mkdir -p) */
};

/*
 * One resolved path. The last component may not exist (fd == -1): then
 * parent_fd and name say where it would be created. Every fd belongs to the
 * node; view_node_release closes them.
 */
struct view_node {
	int fd;			 /* O_PATH fd of the node, -1 when it does not exist */
	int parent_fd;		 /* O_PATH fd of the directory holding it, -1 for "/" */
	char name[NAME_MAX + 1]; /* its name in parent_fd ("" for "/") */
	int mount;		 /* the mount the node belongs to */
	int parent_mount;	 /* the mount parent_fd belongs to (-1 for "/") */
	bool mount_root;      /* the node is a mount's root (parent_fd is the mount point's dir) */
	struct stat st;	      /* lstat of the node when fd >= 0 */
	char vpath[PATH_MAX]; /* the canonical view path (symlinks resolved) */
};

/*
 * Resolves @path (absolute in the view; relative paths start at
 * VIEW_HOME). Returns 0 (node filled, maybe with fd == -1), or -ENOENT (a
 * directory on the way is missing), -ENOTDIR, -ELOOP (more than
 * VIEW_MAX_LINKS links), -ENAMETOOLONG, -EROFS (VIEW_MKDIRS inside a
 * read-only mount), -EINVAL (empty path, NUL) or another -errno.
 */
int view_resolve(const struct view *v, const char *path, int flags, struct view_node *out);
void view_node_release(struct view_node *n);

/* Whether entries can be created or removed in the node's directory (parent_mount is rw). */
bool view_parent_writable(const struct view *v, const struct view_node *n);
/* Whether the node itself can be changed (chmod, write into it). */
bool view_node_writable(const struct view *v, const struct view_node *n);

/* Opens the node for reading (O_RDONLY|O_NONBLOCK|O_CLOEXEC, plus O_DIRECTORY for a dir). */
int view_node_open(const struct view_node *n, int extra_flags);

/* The uid/gid a sandbox process sees for a file in mount @m ("1000" for quaverd's own). */
unsigned view_uid_seen(const struct view *v, int m, uid_t uid);
unsigned view_gid_seen(const struct view *v, int m, gid_t gid);

/*
 * Seeds a new sandbox root (store_tree.c calls it at create): a small
 * Debian-like tree (home/daytona, tmp 1777, root, workspace, var/tmp, opt,
 * mount points proc dev sys usr, merged-/usr symlinks), an etc/ copied from
 * a whitelist of host /etc entries, and passwd/group with root and daytona.
 * What exists already (a snapshot's tree) is kept. 0 or -errno.
 */
int view_seed_root(const char *root);

/*
 * Normalizes a mount path: "/a//b/" -> "/a/b". False when it is not
 * absolute, names "." or "..", is "/" itself or does not fit @size. The
 * view and the runtime build their mount tables with the same rule.
 */
bool view_normalize_mount_path(const char *in, char *out, size_t size);

#endif
