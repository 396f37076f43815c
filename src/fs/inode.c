/*
 * Two chained hash indexes over the same entries: by inode number and by
 * key. One mutex; every operation is short and never calls out.
 */
#include "inode.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct inode {
	struct node_info info;
	uint64_t nlookup;
	uint64_t key_hash;
	struct inode *next_by_ino;
	struct inode *next_by_key;
};

struct inode_table {
	pthread_mutex_t lock;
	struct inode **by_ino;
	struct inode **by_key;
	size_t nbuckets; /* a power of two */
	size_t count;
	struct inode root;
};

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static uint64_t key_hash(const struct node_info *n)
{
	uint64_t h = 14695981039346656037ULL;
	uint32_t kind = n->kind;

	h = fnv1a(h, &kind, sizeof(kind));
	h = fnv1a(h, n->obj_id, strlen(n->obj_id) + 1);
	return fnv1a(h, n->name, strlen(n->name) + 1);
}

static bool same_key(const struct node_info *a, const struct node_info *b)
{
	return a->kind == b->kind && strcmp(a->obj_id, b->obj_id) == 0 &&
	       strcmp(a->name, b->name) == 0;
}

/*
 * The number a key starts from: its hash, kept clear of 0, the root and the
 * two top bits (files/, runs/ and the terminals have their own ranges there).
 */
static uint64_t ino_of_hash(uint64_t h)
{
	uint64_t ino = h & 0x3fffffffffffffffULL;

	return ino <= ROOT_INO ? ino + 2 : ino;
}

static struct inode *find_ino(struct inode_table *t, uint64_t ino)
{
	if (ino == ROOT_INO)
		return &t->root;
	for (struct inode *i = t->by_ino[ino & (t->nbuckets - 1)]; i; i = i->next_by_ino)
		if (i->info.ino == ino)
			return i;
	return NULL;
}

static struct inode *find_key(struct inode_table *t, const struct node_info *n, uint64_t h)
{
	if (n->kind == NK_ROOT)
		return &t->root;
	for (struct inode *i = t->by_key[h & (t->nbuckets - 1)]; i; i = i->next_by_key)
		if (i->key_hash == h && same_key(&i->info, n))
			return i;
	return NULL;
}

/* The first number from the key's own that no other node holds. */
static uint64_t free_ino_for(struct inode_table *t, uint64_t h)
{
	uint64_t ino = ino_of_hash(h);

	while (find_ino(t, ino))
		ino = ino_of_hash(ino + 1);
	return ino;
}

static void link_inode(struct inode_table *t, struct inode *i)
{
	size_t bi = i->info.ino & (t->nbuckets - 1);
	size_t bk = i->key_hash & (t->nbuckets - 1);

	i->next_by_ino = t->by_ino[bi];
	t->by_ino[bi] = i;
	i->next_by_key = t->by_key[bk];
	t->by_key[bk] = i;
}

static void unlink_inode(struct inode_table *t, struct inode *i)
{
	struct inode **pp;

	for (pp = &t->by_ino[i->info.ino & (t->nbuckets - 1)]; *pp; pp = &(*pp)->next_by_ino)
		if (*pp == i) {
			*pp = i->next_by_ino;
			break;
		}
	for (pp = &t->by_key[i->key_hash & (t->nbuckets - 1)]; *pp; pp = &(*pp)->next_by_key)
		if (*pp == i) {
			*pp = i->next_by_key;
			break;
		}
}

static int grow(struct inode_table *t)
{
	size_t old_n = t->nbuckets;
	struct inode **old_ino = t->by_ino;
	struct inode **new_ino = calloc(old_n * 2, sizeof(*new_ino));
	struct inode **new_key = calloc(old_n * 2, sizeof(*new_key));

	if (!new_ino || !new_key) {
		free(new_ino);
		free(new_key);
		return -ENOMEM;
	}
	free(t->by_key);
	t->by_ino = new_ino;
	t->by_key = new_key;
	t->nbuckets = old_n * 2;
	for (size_t b = 0; b < old_n; b++) {
		struct inode *i = old_ino[b];

		while (i) {
			struct inode *next = i->next_by_ino;

			link_inode(t, i);
			i = next;
		}
	}
	free(old_ino);
	return 0;
}

struct inode_table *itable_new(void)
{
	struct inode_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->nbuckets = 256;
	t->by_ino = calloc(t->nbuckets, sizeof(*t->by_ino));
	t->by_key = calloc(t->nbuckets, sizeof(*t->by_key));
	if (!t->by_ino || !t->by_key) {
		itable_free(t);
		return NULL;
	}
	node_make(&t->root.info, NK_ROOT, "", "", "");
	t->root.info.ino = ROOT_INO;
	return t;
}

void itable_free(struct inode_table *t)
{
	if (!t)
		return;
	for (size_t b = 0; t->by_ino && b < t->nbuckets; b++) {
		struct inode *i = t->by_ino[b];

		while (i) {
			struct inode *next = i->next_by_ino;

			free(i);
			i = next;
		}
	}
	free(t->by_ino);
	free(t->by_key);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

int itable_ref(struct inode_table *t, struct node_info *n)
{
	uint64_t h = key_hash(n);
	struct inode *i;
	int ret = 0;

	pthread_mutex_lock(&t->lock);
	i = find_key(t, n, h);
	if (!i) {
		if (t->count >= t->nbuckets && (ret = grow(t)) < 0)
			goto out;
		i = calloc(1, sizeof(*i));
		if (!i) {
			ret = -ENOMEM;
			goto out;
		}
		i->info = *n;
		i->key_hash = h;
		i->info.ino = free_ino_for(t, h);
		link_inode(t, i);
		t->count++;
	} else {
		/* The object's name can be learnt after the node was made. */
		memcpy(i->info.obj_name, n->obj_name, sizeof(i->info.obj_name));
	}
	i->nlookup++;
	n->ino = i->info.ino;
out:
	pthread_mutex_unlock(&t->lock);
	return ret;
}

uint64_t itable_peek(struct inode_table *t, const struct node_info *n)
{
	uint64_t h = key_hash(n);
	struct inode *i;
	uint64_t ino;

	pthread_mutex_lock(&t->lock);
	i = find_key(t, n, h);
	ino = i ? i->info.ino : free_ino_for(t, h);
	pthread_mutex_unlock(&t->lock);
	return ino;
}

bool itable_get(struct inode_table *t, uint64_t ino, struct node_info *out)
{
	struct inode *i;

	pthread_mutex_lock(&t->lock);
	i = find_ino(t, ino);
	if (i)
		*out = i->info;
	pthread_mutex_unlock(&t->lock);
	return i != NULL;
}

void itable_forget(struct inode_table *t, uint64_t ino, uint64_t nlookup)
{
	struct inode *i;

	if (ino == ROOT_INO)
		return;
	pthread_mutex_lock(&t->lock);
	i = find_ino(t, ino);
	if (i) {
		i->nlookup = nlookup >= i->nlookup ? 0 : i->nlookup - nlookup;
		if (i->nlookup == 0) {
			unlink_inode(t, i);
			t->count--;
			free(i);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

size_t itable_inos_of(struct inode_table *t, const char *obj_id, uint64_t *out, size_t max)
{
	size_t n = 0;

	if (!obj_id[0])
		return 0;
	pthread_mutex_lock(&t->lock);
	for (size_t b = 0; b < t->nbuckets && n < max; b++)
		for (struct inode *i = t->by_ino[b]; i && n < max; i = i->next_by_ino)
			if (strcmp(i->info.obj_id, obj_id) == 0)
				out[n++] = i->info.ino;
	pthread_mutex_unlock(&t->lock);
	return n;
}

size_t itable_count(struct inode_table *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count + 1;
	pthread_mutex_unlock(&t->lock);
	return n;
}
