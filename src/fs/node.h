/*
 * The kinds of node in a quaverfs mount and what each one is: the tree of
 * fs-layout.md as data. A node is named by its kind, the id of the object it
 * belongs to (a sandbox, volume or snapshot; "" for the root and the
 * collections) and its name in its directory. Nothing here knows of FUSE.
 */
#ifndef QUAVERFS_NODE_H
#define QUAVERFS_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

enum node_kind {
	NK_NONE = 0,
	NK_ROOT,
	NK_SANDBOXES,
	NK_VOLUMES,
	NK_SNAPSHOTS,
	NK_STATUS,
	NK_DEFAULTS,
	NK_CONTROL,
	NK_ROOT_ERROR,

	NK_SANDBOX,	 /* sandboxes/NAME */
	NK_SB_IDLINK,	 /* sandboxes/ID -> NAME, found by lookup, never listed */
	NK_SB_STATE,
	NK_SB_ERROR,
	NK_SB_ID,
	NK_SB_INFO,
	NK_SB_LABELS,
	NK_SB_LABEL,	 /* labels/KEY */
	NK_SB_ENVDIR,
	NK_SB_ENV,	 /* env/NAME */
	NK_SB_AUTOSTOP,
	NK_SB_AUTOARCHIVE,
	NK_SB_AUTODELETE,
	NK_SB_RESOURCES,
	NK_SB_SNAPSHOT,
	NK_SB_PORTS,
	NK_SB_PORT,	 /* ports/P */
	NK_SB_FILES,	 /* files/: its inode and everything below live in files.c */
	NK_SB_RUNS,	 /* runs/: its inode and everything below live in ops_runs.c */
	NK_SB_PTY,	 /* pty: its inode lives in ops_terms.c */
	NK_SB_TERMINALS, /* terminals/: its inode and everything below live in ops_terms.c */

	NK_VOLUME,	 /* volumes/NAME */
	NK_VOL_ID,
	NK_VOL_STATE,
	NK_VOL_INFO,

	NK_SNAPSHOT,	 /* snapshots/NAME */
	NK_SNAP_ID,
	NK_SNAP_STATE,
	NK_SNAP_INFO,

	NK_COUNT
};

enum obj_type { OBJ_NONE = 0, OBJ_SANDBOX, OBJ_VOLUME, OBJ_SNAPSHOT };

/* Fits a Daytona id (a UUID) with room to spare; longer ids are not shown. */
#define OBJ_ID_MAX 128
#define NODE_NAME_MAX 256

/* A node, by value: safe to hold while the inode table changes. */
struct node_info {
	uint64_t ino;
	enum node_kind kind;
	char obj_id[OBJ_ID_MAX];	  /* "" for root-level nodes */
	char obj_name[NODE_NAME_MAX]; /* the object's name, for paths and symlinks */
	char name[NODE_NAME_MAX];	  /* the name in its directory */
};

struct kind_info {
	const char *name;	  /* fixed name, or NULL when the name is data */
	enum node_kind parent;
	mode_t mode;		  /* S_IFDIR | 0755, S_IFREG | 0644 or 0444, S_IFLNK | 0777 */
	enum obj_type obj;	  /* the object the node belongs to */
};

const struct kind_info *kind_info(enum node_kind kind);
static inline bool kind_is_dir(enum node_kind kind)
{
	return (kind_info(kind)->mode & S_IFMT) == S_IFDIR;
}
static inline bool kind_is_writable(enum node_kind kind)
{
	return (kind_info(kind)->mode & 0200) != 0 && !kind_is_dir(kind);
}

/* The child kind of @dir with fixed name @name, or NK_NONE. */
enum node_kind kind_child_by_name(enum node_kind dir, const char *name);
/* The fixed-name children of @dir in listing order; returns how many (at most @max). */
size_t kind_fixed_children(enum node_kind dir, enum node_kind *out, size_t max);

/* Fills @n (ino left 0). Strings that do not fit make it return false. */
bool node_make(struct node_info *n, enum node_kind kind, const char *obj_id,
	       const char *obj_name, const char *name);

/* The node's path from the mount root, e.g. "sandboxes/demo/state". */
void node_path(const struct node_info *n, char *out, size_t size);

/*
 * True for a name a directory entry can have: not empty, not "." or "..",
 * no '/' and no NUL, at most 255 bytes.
 */
bool name_is_file_name(const char *name);

/* Names file managers probe: answered ENOENT without a request. */
bool name_is_probe(const char *name);

#endif
