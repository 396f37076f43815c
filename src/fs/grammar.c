/* Words, creation options and names: the grammar of fs-layout.md. */
#include "grammar.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- words -------------------------------------------------------------- */

/* Appends @w's text to the NULL-terminated @words (@cap slots, grown by doubling). */
static int push_word(char ***words, size_t *n, size_t *cap, struct buf *w)
{
	if (*n + 2 > *cap) {
		/* Doubling: a 1 MiB write of words must not cost a copy per word. */
		size_t want = *cap ? *cap * 2 : 8;
		char **grown = realloc(*words, want * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		*words = grown;
		*cap = want;
	}
	(*words)[(*n)++] = buf_steal(w);
	(*words)[*n] = NULL;
	return (*words)[*n - 1] ? 0 : -ENOMEM;
}

int words_split(const char *text, size_t len, char ***words, size_t *nwords, char *msg,
		size_t msgsize)
{
	struct buf w = BUF_INIT;
	char **out = NULL;
	size_t n = 0, i = 0, cap = 1;
	bool in_word = false;
	int ret = 0;

	out = calloc(1, sizeof(*out));
	if (!out)
		return -ENOMEM;
	while (i < len && ret == 0) {
		char ch = text[i];

		if (ch == '\0') {
			snprintf(msg, msgsize, "a NUL byte in the command");
			ret = -EINVAL;
		} else if (isspace((unsigned char)ch)) {
			if (in_word)
				ret = push_word(&out, &n, &cap, &w);
			in_word = false;
			i++;
		} else if (ch == '\'' || ch == '"') {
			size_t j = i + 1;

			in_word = true;
			/* An empty quoted word is still a word. */
			ret = buf_append(&w, "", 0);
			while (ret == 0 && j < len && text[j] != ch) {
				if (ch == '"' && text[j] == '\\' && j + 1 < len &&
				    (text[j + 1] == '"' || text[j + 1] == '\\'))
					j++;
				if (text[j] == '\0') {
					snprintf(msg, msgsize, "a NUL byte in the command");
					ret = -EINVAL;
					break;
				}
				ret = buf_append(&w, &text[j], 1);
				j++;
			}
			if (ret == 0 && j >= len) {
				snprintf(msg, msgsize, "unterminated %c quote", ch);
				ret = -EINVAL;
			}
			i = j + 1;
		} else {
			if (ch == '\\' && i + 1 < len)
				i++;
			in_word = true;
			ret = buf_append(&w, &text[i], 1);
			i++;
		}
	}
	if (ret == 0 && in_word)
		ret = push_word(&out, &n, &cap, &w);
	buf_free(&w);
	if (ret < 0) {
		if (ret == -ENOMEM)
			snprintf(msg, msgsize, "out of memory");
		words_free(out);
		return ret;
	}
	*words = out;
	*nwords = n;
	return 0;
}

void words_free(char **words)
{
	if (!words)
		return;
	for (char **w = words; *w; w++)
		free(*w);
	free(words);
}

static bool needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_./:=@,+%", *p))
			return true;
	return false;
}

int word_append_quoted(struct buf *out, const char *s)
{
	int ret;

	if (!needs_quotes(s))
		return buf_append_str(out, s);
	if (!strchr(s, '\''))
		return buf_printf(out, "'%s'", s);
	ret = buf_append_str(out, "\"");
	for (const char *p = s; ret == 0 && *p; p++) {
		if (*p == '"' || *p == '\\')
			ret = buf_append_str(out, "\\");
		if (ret == 0)
			ret = buf_append(out, p, 1);
	}
	return ret ? ret : buf_append_str(out, "\"");
}

/* ---- names -------------------------------------------------------------- */

bool valid_object_name(const char *name)
{
	size_t len = strlen(name);

	if (len < 1 || len > 63 || !isalnum((unsigned char)name[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return false;
	return true;
}

static bool valid_env_name(const char *name)
{
	if (!*name || isdigit((unsigned char)*name))
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			return false;
	return true;
}

/* ---- creation options --------------------------------------------------- */

void copts_init(struct create_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->is_public = -1;
}

static void kv_array_free(struct dt_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static void volumes_free(struct opt_volume *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].volume);
		free(v[i].mount_path);
		free(v[i].subpath);
	}
	free(v);
}

void copts_clear(struct create_opts *o)
{
	free(o->language);
	free(o->snapshot);
	free(o->user);
	free(o->target);
	kv_array_free(o->env, o->nenv);
	kv_array_free(o->labels, o->nlabels);
	volumes_free(o->volumes, o->nvolumes);
	copts_init(o);
}

static int dup_field(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

static int kv_set(struct dt_kv **kv, size_t *n, const char *key, const char *value)
{
	char *v = strdup(value);
	struct dt_kv *grown;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*kv)[i].key, key) == 0) {
			free((*kv)[i].value);
			(*kv)[i].value = v;
			return 0;
		}
	grown = realloc(*kv, (*n + 1) * sizeof(*grown));
	if (!grown || !(grown[*n].key = strdup(key))) {
		if (grown)
			*kv = grown;
		free(v);
		return -ENOMEM;
	}
	*kv = grown;
	grown[*n].value = v;
	(*n)++;
	return 0;
}

int copts_copy(struct create_opts *dst, const struct create_opts *src)
{
	int ret = 0;

	copts_init(dst);
	ret |= dup_field(&dst->language, src->language);
	ret |= dup_field(&dst->snapshot, src->snapshot);
	ret |= dup_field(&dst->user, src->user);
	ret |= dup_field(&dst->target, src->target);
	dst->cpu = src->cpu;
	dst->memory = src->memory;
	dst->disk = src->disk;
	dst->gpu = src->gpu;
	dst->autostop = src->autostop;
	dst->autoarchive = src->autoarchive;
	dst->autodelete = src->autodelete;
	dst->autostop_set = src->autostop_set;
	dst->autoarchive_set = src->autoarchive_set;
	dst->autodelete_set = src->autodelete_set;
	dst->is_public = src->is_public;
	for (size_t i = 0; ret == 0 && i < src->nenv; i++)
		ret = kv_set(&dst->env, &dst->nenv, src->env[i].key, src->env[i].value);
	for (size_t i = 0; ret == 0 && i < src->nlabels; i++)
		ret = kv_set(&dst->labels, &dst->nlabels, src->labels[i].key, src->labels[i].value);
	if (ret == 0 && src->nvolumes) {
		dst->volumes = calloc(src->nvolumes, sizeof(*dst->volumes));
		if (!dst->volumes)
			ret = -ENOMEM;
		for (size_t i = 0; ret == 0 && i < src->nvolumes; i++) {
			dst->nvolumes++;
			ret |= dup_field(&dst->volumes[i].volume, src->volumes[i].volume);
			ret |= dup_field(&dst->volumes[i].mount_path, src->volumes[i].mount_path);
			ret |= dup_field(&dst->volumes[i].subpath, src->volumes[i].subpath);
		}
	}
	if (ret) {
		copts_clear(dst);
		return -ENOMEM;
	}
	return 0;
}

static int set_string(char **field, const char *value)
{
	char *copy = NULL;

	if (value && !(copy = strdup(value)))
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

static int parse_resource(const char *key, const char *value, double *out, char *msg,
			  size_t msgsize)
{
	int64_t v;

	if (parse_int64(value, 1, 1 << 20, &v) < 0) {
		snprintf(msg, msgsize, "%s must be a whole number from 1 (got '%s')", key, value);
		return -EINVAL;
	}
	*out = (double)v;
	return 0;
}

static int parse_minutes(const char *key, const char *value, int64_t min, int *out, char *msg,
			 size_t msgsize)
{
	int64_t v;

	if (parse_int64(value, min, INT32_MAX, &v) < 0) {
		snprintf(msg, msgsize, "%s must be a whole number of minutes from %lld (got '%s')",
			 key, (long long)min, value);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

/* VOL:/mount/path[:subpath] */
static int add_volume(struct create_opts *o, const char *value, char *msg, size_t msgsize)
{
	const char *colon = strchr(value, ':');
	const char *path, *sub;
	struct opt_volume v = {0}, *grown;
	size_t i;

	if (!colon || colon == value || colon[1] != '/') {
		snprintf(msg, msgsize,
			 "volume= takes VOLUME:/mount/path[:subpath] (got '%s')", value);
		return -EINVAL;
	}
	path = colon + 1;
	sub = strchr(path, ':');
	v.volume = strndup(value, (size_t)(colon - value));
	v.mount_path = sub ? strndup(path, (size_t)(sub - path)) : strdup(path);
	if (sub && sub[1])
		v.subpath = strdup(sub + 1);
	if (!v.volume || !v.mount_path || (sub && sub[1] && !v.subpath))
		goto nomem;
	if (sub && !sub[1]) {
		snprintf(msg, msgsize, "volume=%s: empty subpath after ':'", value);
		free(v.volume);
		free(v.mount_path);
		return -EINVAL;
	}
	/* One volume per mount path: a later one replaces it. */
	for (i = 0; i < o->nvolumes; i++)
		if (strcmp(o->volumes[i].mount_path, v.mount_path) == 0)
			break;
	if (i < o->nvolumes) {
		free(o->volumes[i].volume);
		free(o->volumes[i].mount_path);
		free(o->volumes[i].subpath);
		o->volumes[i] = v;
		return 0;
	}
	grown = realloc(o->volumes, (o->nvolumes + 1) * sizeof(*grown));
	if (!grown)
		goto nomem;
	o->volumes = grown;
	o->volumes[o->nvolumes++] = v;
	return 0;
nomem:
	free(v.volume);
	free(v.mount_path);
	free(v.subpath);
	snprintf(msg, msgsize, "out of memory");
	return -ENOMEM;
}

static int apply_kv(struct dt_kv **kv, size_t *n, const char *key, const char *value,
		    bool env, char *msg, size_t msgsize)
{
	const char *eq = strchr(value, '=');
	char *k;
	int ret;

	if (!eq || eq == value) {
		snprintf(msg, msgsize, "%s= takes KEY=VALUE (got '%s')", key, value);
		return -EINVAL;
	}
	k = strndup(value, (size_t)(eq - value));
	if (!k)
		return -ENOMEM;
	if (env && !valid_env_name(k)) {
		snprintf(msg, msgsize, "env=%s: '%s' is not a variable name", value, k);
		free(k);
		return -EINVAL;
	}
	ret = kv_set(kv, n, k, eq + 1);
	free(k);
	return ret;
}

static const char *const create_keys[] = {
	"language", "snapshot", "cpu",	  "memory", "disk",   "gpu",   "autostop", "autoarchive",
	"autodelete", "public", "user", "target", "volume", "env", "label",
};

int copts_apply(struct create_opts *o, const char *word, bool allow_clear, char *msg,
		size_t msgsize)
{
	const char *eq = strchr(word, '=');
	char key[32];
	const char *value;
	size_t klen;
	int ret = 0;
	bool known = false;

	if (!eq || eq == word) {
		snprintf(msg, msgsize, "'%s' is not key=value", word);
		return -EINVAL;
	}
	klen = (size_t)(eq - word);
	if (klen >= sizeof(key))
		klen = sizeof(key) - 1;
	memcpy(key, word, klen);
	key[klen] = '\0';
	value = eq + 1;
	for (size_t i = 0; i < ARRAY_SIZE(create_keys); i++)
		known |= strcmp(key, create_keys[i]) == 0;
	if (!known) {
		snprintf(msg, msgsize,
			 "unknown option '%s' (options: language snapshot cpu memory disk gpu "
			 "autostop autoarchive autodelete public user target volume env label)",
			 key);
		return -EINVAL;
	}

	if (!*value) {
		if (!allow_clear) {
			snprintf(msg, msgsize, "%s= needs a value", key);
			return -EINVAL;
		}
		if (!strcmp(key, "language"))
			ret = set_string(&o->language, NULL);
		else if (!strcmp(key, "snapshot"))
			ret = set_string(&o->snapshot, NULL);
		else if (!strcmp(key, "user"))
			ret = set_string(&o->user, NULL);
		else if (!strcmp(key, "target"))
			ret = set_string(&o->target, NULL);
		else if (!strcmp(key, "cpu"))
			o->cpu = 0;
		else if (!strcmp(key, "memory"))
			o->memory = 0;
		else if (!strcmp(key, "disk"))
			o->disk = 0;
		else if (!strcmp(key, "gpu"))
			o->gpu = 0;
		else if (!strcmp(key, "autostop"))
			o->autostop_set = false;
		else if (!strcmp(key, "autoarchive"))
			o->autoarchive_set = false;
		else if (!strcmp(key, "autodelete"))
			o->autodelete_set = false;
		else if (!strcmp(key, "public"))
			o->is_public = -1;
		else if (!strcmp(key, "env")) {
			kv_array_free(o->env, o->nenv);
			o->env = NULL;
			o->nenv = 0;
		} else if (!strcmp(key, "label")) {
			kv_array_free(o->labels, o->nlabels);
			o->labels = NULL;
			o->nlabels = 0;
		} else if (!strcmp(key, "volume")) {
			volumes_free(o->volumes, o->nvolumes);
			o->volumes = NULL;
			o->nvolumes = 0;
		}
		goto out;
	}

	if (!strcmp(key, "language")) {
		if (strcmp(value, "python") && strcmp(value, "typescript") &&
		    strcmp(value, "javascript")) {
			snprintf(msg, msgsize,
				 "language must be python, typescript or javascript (got '%s')",
				 value);
			return -EINVAL;
		}
		ret = set_string(&o->language, value);
	} else if (!strcmp(key, "snapshot")) {
		ret = set_string(&o->snapshot, value);
	} else if (!strcmp(key, "user")) {
		ret = set_string(&o->user, value);
	} else if (!strcmp(key, "target")) {
		ret = set_string(&o->target, value);
	} else if (!strcmp(key, "cpu")) {
		return parse_resource(key, value, &o->cpu, msg, msgsize);
	} else if (!strcmp(key, "memory")) {
		return parse_resource(key, value, &o->memory, msg, msgsize);
	} else if (!strcmp(key, "disk")) {
		return parse_resource(key, value, &o->disk, msg, msgsize);
	} else if (!strcmp(key, "gpu")) {
		return parse_resource(key, value, &o->gpu, msg, msgsize);
	} else if (!strcmp(key, "autostop")) {
		ret = parse_minutes(key, value, 0, &o->autostop, msg, msgsize);
		o->autostop_set |= ret == 0;
		return ret;
	} else if (!strcmp(key, "autoarchive")) {
		ret = parse_minutes(key, value, 0, &o->autoarchive, msg, msgsize);
		o->autoarchive_set |= ret == 0;
		return ret;
	} else if (!strcmp(key, "autodelete")) {
		ret = parse_minutes(key, value, -1, &o->autodelete, msg, msgsize);
		o->autodelete_set |= ret == 0;
		return ret;
	} else if (!strcmp(key, "public")) {
		if (strcmp(value, "true") && strcmp(value, "false")) {
			snprintf(msg, msgsize, "public must be true or false (got '%s')", value);
			return -EINVAL;
		}
		o->is_public = strcmp(value, "true") == 0;
	} else if (!strcmp(key, "volume")) {
		return add_volume(o, value, msg, msgsize);
	} else if (!strcmp(key, "env")) {
		ret = apply_kv(&o->env, &o->nenv, key, value, true, msg, msgsize);
	} else if (!strcmp(key, "label")) {
		ret = apply_kv(&o->labels, &o->nlabels, key, value, false, msg, msgsize);
	}
out:
	if (ret == -ENOMEM)
		snprintf(msg, msgsize, "out of memory");
	return ret;
}

int copts_check(const struct create_opts *o, char *msg, size_t msgsize)
{
	if (o->snapshot && (o->cpu || o->memory || o->disk || o->gpu)) {
		snprintf(msg, msgsize,
			 "cpu, memory, disk and gpu cannot be set with snapshot= "
			 "(a snapshot brings its own resources)");
		return -EINVAL;
	}
	return 0;
}

static int render_kv(struct buf *out, const char *key, const char *value)
{
	int ret = buf_printf(out, "%s=", key);

	if (ret == 0)
		ret = word_append_quoted(out, value);
	return ret ? ret : buf_append_str(out, "\n");
}

int copts_render(const struct create_opts *o, struct buf *out)
{
	int ret = 0;

	if (o->language)
		ret |= render_kv(out, "language", o->language);
	if (o->snapshot)
		ret |= render_kv(out, "snapshot", o->snapshot);
	if (o->cpu)
		ret |= buf_printf(out, "cpu=%g\n", o->cpu);
	if (o->memory)
		ret |= buf_printf(out, "memory=%g\n", o->memory);
	if (o->disk)
		ret |= buf_printf(out, "disk=%g\n", o->disk);
	if (o->gpu)
		ret |= buf_printf(out, "gpu=%g\n", o->gpu);
	if (o->autostop_set)
		ret |= buf_printf(out, "autostop=%d\n", o->autostop);
	if (o->autoarchive_set)
		ret |= buf_printf(out, "autoarchive=%d\n", o->autoarchive);
	if (o->autodelete_set)
		ret |= buf_printf(out, "autodelete=%d\n", o->autodelete);
	if (o->is_public >= 0)
		ret |= buf_printf(out, "public=%s\n", o->is_public ? "true" : "false");
	if (o->user)
		ret |= render_kv(out, "user", o->user);
	if (o->target)
		ret |= render_kv(out, "target", o->target);
	for (size_t i = 0; i < o->nvolumes; i++) {
		struct buf v = BUF_INIT;

		ret |= buf_printf(&v, "%s:%s%s%s", o->volumes[i].volume, o->volumes[i].mount_path,
				  o->volumes[i].subpath ? ":" : "",
				  o->volumes[i].subpath ? o->volumes[i].subpath : "");
		ret |= render_kv(out, "volume", buf_str(&v));
		buf_free(&v);
	}
	for (size_t i = 0; i < o->nenv; i++) {
		struct buf v = BUF_INIT;

		ret |= buf_printf(&v, "%s=%s", o->env[i].key, o->env[i].value);
		ret |= render_kv(out, "env", buf_str(&v));
		buf_free(&v);
	}
	for (size_t i = 0; i < o->nlabels; i++) {
		struct buf v = BUF_INIT;

		ret |= buf_printf(&v, "%s=%s", o->labels[i].key, o->labels[i].value);
		ret |= render_kv(out, "label", buf_str(&v));
		buf_free(&v);
	}
	return ret ? -ENOMEM : 0;
}

void copts_to_params(const struct create_opts *o, const char *name,
		     struct dt_volume_mount *vols, struct dt_create_params *p)
{
	dt_create_params_init(p);
	p->name = name;
	p->language = o->language;
	p->snapshot = o->snapshot;
	p->user = o->user;
	p->env = o->env;
	p->nenv = o->nenv;
	p->labels = o->labels;
	p->nlabels = o->nlabels;
	p->cpu = o->cpu;
	p->memory = o->memory;
	p->disk = o->disk;
	p->gpu = o->gpu;
	if (o->autostop_set)
		p->auto_stop_interval = o->autostop;
	if (o->autoarchive_set)
		p->auto_archive_interval = o->autoarchive;
	if (o->autodelete_set)
		p->auto_delete_interval = o->autodelete;
	p->is_public = o->is_public;
	for (size_t i = 0; i < o->nvolumes; i++) {
		vols[i].volume_id = o->volumes[i].volume;
		vols[i].mount_path = o->volumes[i].mount_path;
		vols[i].subpath = o->volumes[i].subpath;
	}
	p->volumes = vols;
	p->nvolumes = o->nvolumes;
}
