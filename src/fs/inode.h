/*
 * The inode table: one inode number per node, stable for as long as the
 * node's object exists. The number is derived from the node's key (kind,
 * object id, name), so a node the kernel forgot gets the same number when it
 * comes back; a collision moves to the next free number. Lookup counts follow
 * the kernel's: a node is dropped when its count returns to zero.
 */
#ifndef QUAVERFS_INODE_H
#define QUAVERFS_INODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"

#define ROOT_INO 1 /* FUSE_ROOT_ID */

struct inode_table;

struct inode_table *itable_new(void);
void itable_free(struct inode_table *t);

/*
 * Finds or adds the node of @n's key and counts one lookup; sets n->ino.
 * The root is always present. Returns 0 or -ENOMEM.
 */
int itable_ref(struct inode_table *t, struct node_info *n);
/* The inode number the node has or would get, without adding it (for readdir). */
uint64_t itable_peek(struct inode_table *t, const struct node_info *n);
/* Copies the node of @ino into @out. False when the table does not know it. */
bool itable_get(struct inode_table *t, uint64_t ino, struct node_info *out);
/* Counts @nlookup forgets; the node goes when none are left (never the root). */
void itable_forget(struct inode_table *t, uint64_t ino, uint64_t nlookup);
/* Up to @max inode numbers of the nodes of object @obj_id; returns how many. */
size_t itable_inos_of(struct inode_table *t, const char *obj_id, uint64_t *out, size_t max);
size_t itable_count(struct inode_table *t);

#endif
