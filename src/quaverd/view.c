/*
 * The sandbox's view (view.h): building the mount table of a started
 * sandbox, resolving paths inside it without ever leaving it, and seeding
 * a new sandbox's root.
 *
 * Why not openat2(RESOLVE_IN_ROOT)? The view is several host trees (the
 * root, /usr, volumes) stitched together at mount points, which no single
 * dirfd can express; the resolver below walks one component at a time,
 * exactly as the kernel does inside a mount namespace, and is just as
 * strict: each component is opened O_PATH|O_NOFOLLOW relative to the fd of
 * the directory before it, so renaming or replacing directories while we
 * walk cannot lead the walk anywhere but where an in-sandbox process could
 * go.
 */
#include "view.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* ---- the mount table ------------------------------------------------------- */

static void mount_clear(struct view_mount *m)
{
	free(m->path);
	free(m->source);
	free(m->source_base);
	free(m->source_rel);
	free(m->volume_id);
	if (m->fd >= 0)
		close(m->fd);
	memset(m, 0, sizeof(*m));
	m->fd = -1;
}

void view_free(struct view *v)
{
	for (size_t i = 0; i < v->nmounts; i++)
		mount_clear(&v->mounts[i]);
	v->nmounts = 0;
}

int view_open_source(const struct view_mount *m)
{
	const char *p = m->source_rel ? m->source_rel : "";
	char comp[NAME_MAX + 1];
	struct stat st;
	int fd;

	fd = open(m->source_base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (*p) {
		size_t len = strcspn(p, "/");
		int next;

		if (len == 0) {
			p++;
			continue;
		}
		if (len > NAME_MAX) {
			close(fd);
			return -ENAMETOOLONG;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		p += len;
		if (!strcmp(comp, ".") || !strcmp(comp, "..")) {
			close(fd);
			return -EINVAL;
		}
		/* A symlink planted in a volume must not move the mount elsewhere. */
		next = openat(fd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (next < 0)
			return -errno;
		fd = next;
	}
	if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		close(fd);
		return -ENOTDIR;
	}
	return fd;
}

int view_mount_at(const struct view *v, const char *vpath)
{
	for (size_t i = v->nmounts; i-- > 1;)
		if (!strcmp(v->mounts[i].path, vpath))
			return (int)i;
	return -1;
}

static int add_mount(struct view *v, enum view_mount_kind kind, const char *path, const char *base,
		     const char *rel, bool read_only, const char *volume_id)
{
	struct view_mount *m;
	struct buf src = BUF_INIT;

	if (v->nmounts == VIEW_MAX_MOUNTS)
		return -E2BIG;
	m = &v->mounts[v->nmounts];
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->kind = kind;
	m->read_only = read_only;
	buf_append_str(&src, base);
	if (rel && rel[0])
		buf_printf(&src, "/%s", rel);
	m->path = strdup(path);
	m->source_base = strdup(base);
	m->source_rel = strdup(rel ? rel : "");
	m->source = buf_steal(&src);
	m->volume_id = volume_id ? strdup(volume_id) : NULL;
	if (!m->path || !m->source_base || !m->source_rel || !m->source ||
	    (volume_id && !m->volume_id)) {
		mount_clear(m);
		return -ENOMEM;
	}
	v->nmounts++;
	return 0;
}

bool view_normalize_mount_path(const char *in, char *out, size_t size)
{
	size_t len = 0;
	const char *p = in;

	if (in[0] != '/')
		return false;
	while (*p) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n == 0)
			break;
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (len + 1 + n + 1 > size)
			return false;
		out[len++] = '/';
		memcpy(out + len, p, n);
		len += n;
		p += n;
	}
	if (len == 0)
		return false;
	out[len] = '\0';
	return true;
}

static int cmp_mount_len(const void *a, const void *b)
{
	const cJSON *const *x = a, *const *y = b;
	const cJSON *px = cJSON_GetObjectItemCaseSensitive(*x, "mountPath");
	const cJSON *py = cJSON_GetObjectItemCaseSensitive(*y, "mountPath");
	size_t lx = cJSON_IsString(px) ? strlen(px->valuestring) : 0;
	size_t ly = cJSON_IsString(py) ? strlen(py->valuestring) : 0;

	return lx < ly ? -1 : lx > ly;
}

/*
 * Makes sure the mount point of the mount about to be added exists as a
 * directory in the view built so far (bubblewrap needs one, and listings
 * show it). Best effort: a mount point under /usr cannot be made.
 */
static void make_mount_point(struct view *v, const char *path)
{
	struct view_node n;

	if (view_resolve(v, path, VIEW_NOFOLLOW | VIEW_MKDIRS, &n) < 0)
		return;
	if (n.fd < 0 && n.parent_fd >= 0 && view_parent_writable(v, &n))
		if (mkdirat(n.parent_fd, n.name, 0755) < 0 && errno != EEXIST)
			log_debug("sandbox %s: cannot create mount point %s: %s", v->sandbox_id,
				  path, strerror(errno));
	view_node_release(&n);
}

int view_build(struct store *st, const char *sandbox_id, struct view *out, struct view_err *err)
{
	struct store_sandbox_info info;
	struct store_err serr = {{0}};
	char root[PATH_MAX], vpath[PATH_MAX], base[PATH_MAX];
	const cJSON *vols[VIEW_MAX_MOUNTS];
	size_t nvols = 0, rlen, tail;
	const cJSON *m;
	int rc;

	memset(out, 0, sizeof(*out));
	err->msg[0] = '\0';
	rc = store_sandbox_root(st, sandbox_id, root, sizeof(root), &serr);
	if (rc < 0) {
		copy_str(err->msg, sizeof(err->msg), serr.msg);
		return rc;
	}
	rc = store_sandbox_get(st, sandbox_id, &info, &serr);
	if (rc < 0) {
		copy_str(err->msg, sizeof(err->msg), serr.msg);
		return rc;
	}
	copy_str(out->sandbox_id, sizeof(out->sandbox_id), info.id);
	/* root is STATE/sandboxes/ID/root: the state dir is three levels up. */
	rlen = strlen(root);
	tail = strlen("/sandboxes/") + strlen(info.id) + strlen("/root");
	if (rlen <= tail) {
		rc = -EINVAL;
		snprintf(err->msg, sizeof(err->msg), "unexpected sandbox root %.400s", root);
		goto out;
	}
	snprintf(out->state_dir, sizeof(out->state_dir), "%.*s", (int)(rlen - tail), root);

	rc = add_mount(out, VIEW_MOUNT_ROOT, "/", root, "", false, NULL);
	if (rc == 0)
		rc = add_mount(out, VIEW_MOUNT_SYSTEM, "/usr", "/usr", "", true, NULL);
	if (rc < 0)
		goto out;

	cJSON_ArrayForEach(m, info.volumes)
	{
		if (nvols == VIEW_MAX_MOUNTS - 2) {
			rc = -E2BIG;
			snprintf(err->msg, sizeof(err->msg), "too many volumes");
			goto out;
		}
		vols[nvols++] = m;
	}
	/* Parents before children, so a volume inside another lands in its source. */
	qsort(vols, nvols, sizeof(vols[0]), cmp_mount_len);
	for (size_t i = 0; i < out->nmounts; i++) {
		out->mounts[i].fd = view_open_source(&out->mounts[i]);
		if (out->mounts[i].fd < 0) {
			rc = out->mounts[i].fd;
			snprintf(err->msg, sizeof(err->msg), "cannot open %.300s: %s",
				 out->mounts[i].path, strerror(-rc));
			goto out;
		}
	}
	for (size_t i = 0; i < nvols; i++) {
		const cJSON *vid = cJSON_GetObjectItemCaseSensitive(vols[i], "volumeId");
		const cJSON *mp = cJSON_GetObjectItemCaseSensitive(vols[i], "mountPath");
		const cJSON *sub = cJSON_GetObjectItemCaseSensitive(vols[i], "subpath");
		const char *rel = cJSON_IsString(sub) ? sub->valuestring : "";
		struct view_mount *vm;

		if (!cJSON_IsString(vid) || !cJSON_IsString(mp) ||
		    !view_normalize_mount_path(mp->valuestring, vpath, sizeof(vpath)) ||
		    strchr(vid->valuestring, '/') || vid->valuestring[0] == '.') {
			rc = -EINVAL;
			snprintf(err->msg, sizeof(err->msg), "invalid volume mount in the record");
			goto out;
		}
		if (snprintf(base, sizeof(base), "%s/volumes/%s/data", out->state_dir,
			     vid->valuestring) >= (int)sizeof(base)) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		make_mount_point(out, vpath);
		rc = add_mount(out, VIEW_MOUNT_VOLUME, vpath, base, rel, false, vid->valuestring);
		if (rc < 0)
			goto out;
		vm = &out->mounts[out->nmounts - 1];
		/* Store checked the subpath at create; a ".." or a symlink here is refused. */
		vm->fd = view_open_source(vm);
		if (vm->fd < 0) {
			rc = vm->fd;
			vm->fd = -1;
			snprintf(err->msg, sizeof(err->msg),
				 "cannot open volume %.40s at %.300s: %s", vid->valuestring, vpath,
				 strerror(-rc));
			goto out;
		}
	}
	make_mount_point(out, "/usr");
	rc = 0;
out:
	store_sandbox_info_free(&info);
	if (rc < 0) {
		if (!err->msg[0])
			snprintf(err->msg, sizeof(err->msg), "%s", strerror(-rc));
		view_free(out);
	}
	return rc;
}

/* ---- the resolver ---------------------------------------------------------- */

struct walk_ent {
	int fd; /* O_PATH, -1: the (last) component does not exist */
	int mount;
	bool mount_root;
	size_t vlen; /* length of the view path up to this entry */
	char name[NAME_MAX + 1];
	struct stat st;
};

struct walk {
	const struct view *v;
	struct walk_ent *ents;
	size_t n, cap;
	char vpath[PATH_MAX];
};

static void walk_pop(struct walk *w)
{
	struct walk_ent *e = &w->ents[--w->n];

	if (e->fd >= 0)
		close(e->fd);
	w->vpath[w->n ? w->ents[w->n - 1].vlen : 0] = '\0';
}

static int walk_push(struct walk *w, int fd, int mount, bool mount_root, const char *name,
		     const struct stat *st)
{
	struct walk_ent *e;
	size_t plen = w->n ? w->ents[w->n - 1].vlen : 0;
	size_t nlen = strlen(name);

	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct walk_ent *grown;

		if (cap > PATH_MAX / 2)
			return -ENAMETOOLONG;
		grown = realloc(w->ents, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		w->ents = grown;
		w->cap = cap;
	}
	if (w->n > 0) {
		if (plen + 1 + nlen + 1 > sizeof(w->vpath))
			return -ENAMETOOLONG;
		w->vpath[plen] = '/';
		memcpy(w->vpath + plen + 1, name, nlen + 1);
		plen += 1 + nlen;
	}
	e = &w->ents[w->n++];
	e->fd = fd;
	e->mount = mount;
	e->mount_root = mount_root;
	e->vlen = plen;
	copy_str(e->name, sizeof(e->name), name);
	if (st)
		e->st = *st;
	else
		memset(&e->st, 0, sizeof(e->st));
	return 0;
}

static void walk_free(struct walk *w)
{
	while (w->n > 0)
		walk_pop(w);
	free(w->ents);
}

/* The view path of the child @name of the top entry, in @out. */
static int child_vpath(const struct walk *w, const char *name, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/%s", w->vpath, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/*
 * Replaces the path still to walk with "@target/@rest" (a symlink met on
 * the way), in a fresh allocation.
 */
static int splice_link(char **rest, const char *target, const char *after)
{
	struct buf b = BUF_INIT;

	if (buf_append_str(&b, target) < 0 || buf_append_str(&b, "/") < 0 ||
	    buf_append_str(&b, after) < 0) {
		buf_free(&b);
		return -ENOMEM;
	}
	if (b.len > 4 * PATH_MAX) {
		buf_free(&b);
		return -ENAMETOOLONG;
	}
	free(*rest);
	*rest = buf_steal(&b);
	return 0;
}

static int root_entry(struct walk *w)
{
	int fd = fcntl(w->v->mounts[0].fd, F_DUPFD_CLOEXEC, 0);
	struct stat st;
	int rc;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = walk_push(w, fd, 0, true, "", &st);
	if (rc < 0)
		close(fd);
	w->vpath[0] = '\0';
	return rc;
}

/* Opens the component @name of the top directory, entering a mount when it is a mount point. */
static int open_component(struct walk *w, const char *name, int *mount, bool *mount_root,
			  struct stat *st)
{
	const struct walk_ent *top = &w->ents[w->n - 1];
	char vpath[PATH_MAX];
	int fd, m, rc;

	rc = child_vpath(w, name, vpath, sizeof(vpath));
	if (rc < 0)
		return rc;
	m = view_mount_at(w->v, vpath);
	if (m > 0) {
		fd = fcntl(w->v->mounts[m].fd, F_DUPFD_CLOEXEC, 0);
		*mount = m;
		*mount_root = true;
	} else {
		fd = openat(top->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		*mount = top->mount;
		*mount_root = false;
	}
	if (fd < 0)
		return -errno;
	if (fstatat(fd, "", st, AT_EMPTY_PATH) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int view_resolve(const struct view *v, const char *path, int flags, struct view_node *out)
{
	struct walk w = {.v = v};
	char *rest = NULL, *p;
	char comp[NAME_MAX + 1];
	int links = 0, rc;

	memset(out, 0, sizeof(*out));
	out->fd = out->parent_fd = -1;
	out->mount = out->parent_mount = -1;
	if (!path || !path[0])
		return -EINVAL;
	if (v->nmounts == 0 || v->mounts[0].fd < 0)
		return -EBADF;
	if (path[0] == '/')
		rest = strdup(path);
	else if (asprintf(&rest, "%s/%s", VIEW_HOME, path) < 0)
		rest = NULL;
	if (!rest)
		return -ENOMEM;
	if (strlen(rest) >= PATH_MAX) {
		free(rest);
		return -ENAMETOOLONG;
	}
	rc = root_entry(&w);
	if (rc < 0)
		goto out;

	p = rest;
	for (;;) {
		struct walk_ent *top;
		struct stat st;
		size_t len;
		bool last, mount_root;
		int fd, mount;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		len = strcspn(p, "/");
		if (len > NAME_MAX) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		p += len;
		while (*p == '/')
			p++;
		last = *p == '\0';
		top = &w.ents[w.n - 1];
		if (top->fd < 0) {
			rc = -ENOENT; /* something below a missing name */
			goto out;
		}
		if (!S_ISDIR(top->st.st_mode)) {
			rc = -ENOTDIR;
			goto out;
		}
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			/* Never above the root; from a mount's root to its mount point's parent. */
			if (w.n > 1)
				walk_pop(&w);
			continue;
		}
		fd = open_component(&w, comp, &mount, &mount_root, &st);
		if (fd == -ENOENT && !last && (flags & VIEW_MKDIRS)) {
			if (v->mounts[top->mount].read_only) {
				rc = -EROFS;
				goto out;
			}
			if (mkdirat(top->fd, comp, 0755) < 0 && errno != EEXIST) {
				rc = -errno;
				goto out;
			}
			fd = open_component(&w, comp, &mount, &mount_root, &st);
		}
		if (fd == -ENOENT && last) {
			rc = walk_push(&w, -1, top->mount, false, comp, NULL);
			if (rc < 0)
				goto out;
			continue;
		}
		if (fd < 0) {
			rc = fd;
			goto out;
		}
		if (S_ISLNK(st.st_mode) && !(last && (flags & VIEW_NOFOLLOW))) {
			char target[PATH_MAX];
			ssize_t n;
			char *after;

			if (++links > VIEW_MAX_LINKS) {
				close(fd);
				rc = -ELOOP;
				goto out;
			}
			/* Read the link we opened, not whatever the name points to now. */
			n = readlinkat(fd, "", target, sizeof(target) - 1);
			close(fd);
			if (n < 0) {
				rc = -errno;
				goto out;
			}
			if (n == 0) {
				rc = -ENOENT;
				goto out;
			}
			target[n] = '\0';
			if (target[0] == '/') {
				/* An absolute target starts again at the view's root. */
				while (w.n > 1)
					walk_pop(&w);
			}
			after = strdup(p);
			if (!after) {
				rc = -ENOMEM;
				goto out;
			}
			rc = splice_link(&rest, target, after);
			free(after);
			if (rc < 0)
				goto out;
			p = rest;
			continue;
		}
		rc = walk_push(&w, fd, mount, mount_root, comp, &st);
		if (rc < 0) {
			close(fd);
			goto out;
		}
	}

	/* The node is the top of the stack; its parent the entry below. */
	{
		struct walk_ent *top = &w.ents[w.n - 1];

		out->fd = top->fd;
		top->fd = -1;
		out->mount = top->mount;
		out->mount_root = top->mount_root;
		out->st = top->st;
		copy_str(out->name, sizeof(out->name), top->name);
		copy_str(out->vpath, sizeof(out->vpath), w.vpath[0] ? w.vpath : "/");
		if (w.n > 1) {
			struct walk_ent *parent = &w.ents[w.n - 2];

			out->parent_fd = parent->fd;
			parent->fd = -1;
			out->parent_mount = parent->mount;
		}
	}
	rc = 0;
out:
	walk_free(&w);
	free(rest);
	if (rc < 0)
		view_node_release(out);
	return rc;
}

void view_node_release(struct view_node *n)
{
	if (n->fd >= 0)
		close(n->fd);
	if (n->parent_fd >= 0)
		close(n->parent_fd);
	n->fd = n->parent_fd = -1;
}

bool view_parent_writable(const struct view *v, const struct view_node *n)
{
	return n->parent_mount >= 0 && !v->mounts[n->parent_mount].read_only;
}

bool view_node_writable(const struct view *v, const struct view_node *n)
{
	return n->mount >= 0 && !v->mounts[n->mount].read_only;
}

int view_node_open(const struct view_node *n, int extra_flags)
{
	struct stat st;
	int fd;

	if (n->fd < 0)
		return -ENOENT;
	if (S_ISDIR(n->st.st_mode)) {
		fd = openat(n->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | extra_flags);
		return fd < 0 ? -errno : fd;
	}
	if (!S_ISREG(n->st.st_mode) || n->parent_fd < 0)
		return -EINVAL;
	/* O_NONBLOCK: a FIFO swapped in under the name must not hang us. */
	fd = openat(n->parent_fd, n->name,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | extra_flags);
	if (fd < 0)
		return errno == ELOOP ? -ESTALE : -errno;
	if (fstat(fd, &st) < 0 || st.st_dev != n->st.st_dev || st.st_ino != n->st.st_ino) {
		close(fd);
		return -ESTALE; /* replaced since it was resolved */
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

unsigned view_uid_seen(const struct view *v, int m, uid_t uid)
{
	if (m >= 0 && v->mounts[m].kind != VIEW_MOUNT_SYSTEM && uid == geteuid())
		return VIEW_USER_ID;
	return (unsigned)uid;
}

unsigned view_gid_seen(const struct view *v, int m, gid_t gid)
{
	if (m >= 0 && v->mounts[m].kind != VIEW_MOUNT_SYSTEM && gid == getegid())
		return VIEW_USER_ID;
	return (unsigned)gid;
}

/* ---- seeding a new root ---------------------------------------------------- */

/* Host /etc entries a process needs; nothing else is copied (never shadow, keys). */
static const char *const etc_whitelist[] = {
    "alternatives", "ssl",	   "ca-certificates*",
    "ld.so.cache",  "ld.so.conf*", "nsswitch.conf",
    "hosts",	    "resolv.conf", "localtime",
    "timezone",	    "os-release",  "debian_version",
    "profile",	    "profile.d",   "bash.bashrc",
    "skel",	    "python3*",	   "mime.types",
    "terminfo",	    "inputrc",	   "shells",
    "environment",  NULL,
};

/* Names never copied, wherever they appear (ssl/private holds keys). */
static const char *const etc_denylist[] = {
    "shadow*", "gshadow*", "*-", "private", "ssh*", "*.key", "*.pem.key", "sudoers*", NULL,
};

#define SEED_MAX_ENTRIES 20000
#define SEED_MAX_DEPTH 8
#define SEED_MAX_FILE (8 * 1024 * 1024)

static bool name_listed(const char *name, const char *const *list)
{
	for (size_t i = 0; list[i]; i++)
		if (fnmatch(list[i], name, 0) == 0)
			return true;
	return false;
}

/* mkdir of @rel beneath @dirfd without following symlinks; what exists is kept. */
static int mkdir_beneath(int dirfd, const char *rel, mode_t mode)
{
	char comp[NAME_MAX + 1];
	const char *p = rel;
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0), rc = 0;

	if (fd < 0)
		return -errno;
	while (*p) {
		size_t len = strcspn(p, "/");
		bool last;
		int next;

		memcpy(comp, p, len);
		comp[len] = '\0';
		p += len;
		while (*p == '/')
			p++;
		last = !*p;
		if (mkdirat(fd, comp, last ? mode : 0755) == 0) {
			/* mkdir applies the umask; tmp must come out exactly 1777. */
			if (last && fchmodat(fd, comp, mode, 0) < 0) {
				rc = -errno;
				break;
			}
		} else if (errno != EEXIST) {
			rc = -errno;
			break;
		}
		if (last)
			break;
		next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			rc = -errno;
			break;
		}
		close(fd);
		fd = next;
	}
	close(fd);
	return rc;
}

static int copy_fd(int in, int out)
{
	char buf[65536];
	ssize_t n;
	size_t total = 0;

	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		total += (size_t)n;
		if (total > SEED_MAX_FILE)
			return -EFBIG;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			off += w;
		}
	}
	return 0;
}

static int copy_regular(int sdir, const char *name, int ddir, mode_t mode)
{
	int in, out, rc;

	in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in < 0)
		return -errno;
	out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
	if (out < 0) {
		rc = errno == EEXIST ? 0 : -errno;
		close(in);
		return rc;
	}
	rc = copy_fd(in, out);
	if (rc == 0 && fchmod(out, mode & 0777) < 0)
		rc = -errno;
	close(in);
	close(out);
	if (rc < 0)
		unlinkat(ddir, name, 0);
	return rc;
}

/*
 * Copies the entry @name of @sdir into @ddir (what exists is kept), a
 * directory recursively; symlinks as symlinks, special files skipped.
 * Errors on single entries (unreadable files) are skipped: the seed is
 * best effort, never a reason to fail a create.
 */
static void copy_entry(int sdir, const char *name, int ddir, int depth, int *budget)
{
	struct stat st;

	if (--*budget < 0 || name_listed(name, etc_denylist))
		return;
	if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);

		if (n <= 0)
			return;
		target[n] = '\0';
		if (symlinkat(target, ddir, name) < 0 && errno != EEXIST)
			log_debug("seed: symlink %s: %s", name, strerror(errno));
	} else if (S_ISREG(st.st_mode)) {
		int rc = copy_regular(sdir, name, ddir, st.st_mode);
		if (rc < 0)
			log_debug("seed: copy %s: %s", name, strerror(-rc));
	} else if (S_ISDIR(st.st_mode) && depth < SEED_MAX_DEPTH) {
		int s, d;
		DIR *dir;
		struct dirent *de;

		if (mkdirat(ddir, name, st.st_mode & 0777) < 0 && errno != EEXIST)
			return;
		d = openat(ddir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (d < 0 || s < 0 || !(dir = fdopendir(s))) {
			if (d >= 0)
				close(d);
			if (s >= 0)
				close(s);
			return;
		}
		while ((de = readdir(dir)) != NULL) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			copy_entry(dirfd(dir), de->d_name, d, depth + 1, budget);
		}
		closedir(dir);
		close(d);
	}
}

/*
 * A whitelisted top-level /etc entry that is a symlink out of /usr (such as
 * resolv.conf into /run) would dangle in the sandbox: copy what it points to.
 */
static void seed_etc_entry(int host_etc, const char *name, int etc, int *budget)
{
	char target[PATH_MAX];
	ssize_t n = readlinkat(host_etc, name, target, sizeof(target) - 1);
	struct stat st;

	if (n > 0) {
		target[n] = '\0';
		if (target[0] == '/' && strncmp(target, "/usr/", 5) != 0 &&
		    strncmp(target, "/etc/", 5) != 0) {
			if (fstatat(host_etc, name, &st, 0) == 0 && S_ISREG(st.st_mode) &&
			    st.st_size <= SEED_MAX_FILE) {
				int in = openat(host_etc, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
				int out = in < 0 ? -1
						 : openat(etc, name,
							  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
							      O_CLOEXEC,
							  0644);
				if (out >= 0 && copy_fd(in, out) < 0)
					unlinkat(etc, name, 0);
				if (in >= 0)
					close(in);
				if (out >= 0)
					close(out);
			}
			return;
		}
	}
	copy_entry(host_etc, name, etc, 0, budget);
}

static int write_new_file(int dirfd, const char *name, const char *text, mode_t mode)
{
	size_t len = strlen(text);
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	int rc = 0;

	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	if (write(fd, text, len) != (ssize_t)len || fchmod(fd, mode) < 0)
		rc = -EIO;
	close(fd);
	return rc;
}

int view_seed_root(const char *root)
{
	static const struct {
		const char *path;
		mode_t mode;
	} dirs[] = {
	    {"home/daytona", 0755}, {"tmp", 01777}, {"root", 0700}, {"workspace", 0755},
	    {"var/tmp", 01777},	    {"opt", 0755},  {"proc", 0755}, {"dev", 0755},
	    {"sys", 0755},	    {"usr", 0755},  {"etc", 0755},
	};
	static const char *const usr_links[][2] = {
	    {"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}};
	int rootfd, etc = -1, host_etc = -1, rc = 0, budget = SEED_MAX_ENTRIES;
	DIR *dir = NULL;
	struct dirent *de;

	rootfd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0)
		return -errno;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		rc = mkdir_beneath(rootfd, dirs[i].path, dirs[i].mode);
		if (rc < 0 && rc != -ENOTDIR && rc != -ELOOP)
			goto out;
		rc = 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(usr_links); i++) {
		char host[64];
		struct stat st;

		snprintf(host, sizeof(host), "/%s", usr_links[i][1]);
		if (stat(host, &st) < 0)
			continue; /* no /usr/lib64 on this host: no dangling link */
		if (symlinkat(usr_links[i][1], rootfd, usr_links[i][0]) < 0 && errno != EEXIST) {
			rc = -errno;
			goto out;
		}
	}

	etc = openat(rootfd, "etc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (etc < 0) {
		rc = 0; /* a snapshot's etc that is not a directory: leave it be */
		goto out;
	}
	rc = write_new_file(etc, "passwd",
			    "root:x:0:0:root:/root:/bin/bash\n"
			    "daytona:x:1000:1000:daytona:/home/daytona:/bin/bash\n",
			    0644);
	if (rc == 0)
		rc = write_new_file(etc, "group", "root:x:0:\ndaytona:x:1000:\n", 0644);
	if (rc < 0)
		goto out;
	host_etc = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (host_etc < 0 || !(dir = fdopendir(host_etc))) {
		log_warn("seeding a sandbox's etc: cannot read the host's /etc: %s",
			 strerror(errno));
		if (host_etc >= 0)
			close(host_etc);
		host_etc = -1;
		goto out;
	}
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' || !name_listed(de->d_name, etc_whitelist) ||
		    name_listed(de->d_name, etc_denylist))
			continue;
		seed_etc_entry(dirfd(dir), de->d_name, etc, &budget);
	}
out:
	if (dir)
		closedir(dir);
	if (etc >= 0)
		close(etc);
	close(rootfd);
	return rc;
}
