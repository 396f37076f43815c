/*
 * The toolbox's FileInfo (daytona-api.md section 6) into struct
 * dt_file_info: mode bits from "permissions" ("%04o") and Go's
 * FileMode.String() in "mode", times from "modifiedAt" (RFC 3339 with
 * nanoseconds) or the deprecated "modTime" (Go's time.String()).
 *
 * A listing comes from the sandbox, which runs whatever code it likes, so
 * it is hostile input: its size is bounded before cJSON builds a tree,
 * entries are capped at DT_MAX_LISTING, names that are empty or hide a NUL
 * are dropped, sizes are clamped and never used to size anything.
 */
#include "dt_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Nodes cJSON may build for one listing: FileInfo has about 14 per entry. */
#define MAX_LISTING_TOKENS ((size_t)DT_MAX_LISTING * 32)

/* U+FFFF (a noncharacter), which a "\u0000" escape is rewritten to before parsing. */
#define NUL_MARK "\xef\xbf\xbf"

/* ---- times ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool leap_year(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && leap_year(y) ? 29 : days[m - 1];
}

/* Exactly @n digits at *p into *out; advances *p. */
static bool digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool expect_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/*
 * "2026-06-23T15:33:38.123456789Z" / "+02:00" (RFC 3339), or with
 * @go_style "2026-06-23 15:33:38.123456789 +0000 UTC" (Go's time.String,
 * whose zone name and monotonic " m=+..." suffix are ignored).
 */
static int parse_time(const char *s, bool go_style, struct timespec *out)
{
	const char *p = s;
	int year, mon, day, hour, min, sec, off_h = 0, off_m = 0, sign = 0;
	long nsec = 0;
	int64_t t;

	if (!s || !digits(&p, 4, &year) || !expect_char(&p, '-') || !digits(&p, 2, &mon) ||
	    !expect_char(&p, '-') || !digits(&p, 2, &day))
		return -EINVAL;
	if (go_style ? *p != ' ' : (*p != 'T' && *p != 't' && *p != ' '))
		return -EINVAL;
	p++;
	if (!digits(&p, 2, &hour) || !expect_char(&p, ':') || !digits(&p, 2, &min) ||
	    !expect_char(&p, ':') || !digits(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.' || *p == ',') {
		int n = 0;

		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++, n++)
			if (n < 9)
				nsec = nsec * 10 + (*p - '0');
		for (; n < 9; n++)
			nsec *= 10;
	}
	if (go_style && !expect_char(&p, ' '))
		return -EINVAL;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		p++;
		if (!digits(&p, 2, &off_h))
			return -EINVAL;
		if (!go_style && !expect_char(&p, ':'))
			return -EINVAL;
		if (!digits(&p, 2, &off_m))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (!go_style && *p)
		return -EINVAL;
	if (go_style && *p && *p != ' ')
		return -EINVAL;
	if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 ||
	    min > 59 || sec > 60 || off_h > 23 || off_m > 59)
		return -EINVAL;
	if (sec == 60) /* a leap second reads as the last second of its minute */
		sec = 59;
	t = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
	t -= sign * (off_h * 3600 + off_m * 60);
	out->tv_sec = (time_t)t;
	out->tv_nsec = nsec;
	return 0;
}

int dt_parse_rfc3339(const char *s, struct timespec *out)
{
	return parse_time(s, false, out);
}

int dt_parse_go_time(const char *s, struct timespec *out)
{
	return parse_time(s, true, out);
}

/* ---- modes ---- */

/* Octal digits only (at most 7): 0 and *out, else -EINVAL. */
static int parse_octal(const char *s, unsigned *out)
{
	unsigned v = 0;
	size_t n = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++, n++) {
		if (*s < '0' || *s > '7' || n >= 7)
			return -EINVAL;
		v = v * 8 + (unsigned)(*s - '0');
	}
	*out = v;
	return 0;
}

/* Go's FileMode.String(): type letters (or "-") then nine rwx characters. */
static int parse_go_mode(const char *s, mode_t *type, unsigned *perm, bool *is_dir)
{
	static const char rwx[] = "rwxrwxrwx";
	size_t len = s ? strlen(s) : 0, nletters;
	bool device = false, chr = false;
	unsigned bits = 0;

	if (len < 10 || len > 9 + 13)
		return -EINVAL;
	nletters = len - 9;
	for (size_t i = 0; i < 9; i++) {
		char ch = s[nletters + i];

		if (ch == rwx[i])
			bits |= 1u << (8 - i);
		else if (ch != '-')
			return -EINVAL;
	}
	*type = 0;
	for (size_t i = 0; i < nletters; i++) {
		switch (s[i]) {
		case '-':
			if (nletters != 1)
				return -EINVAL;
			break;
		case 'd':
			*type = S_IFDIR;
			*is_dir = true;
			break;
		case 'L':
			*type = S_IFLNK;
			break;
		case 'p':
			*type = S_IFIFO;
			break;
		case 'S':
			*type = S_IFSOCK;
			break;
		case 'D':
			device = true;
			break;
		case 'c':
			chr = true;
			break;
		case 'u':
			bits |= S_ISUID;
			break;
		case 'g':
			bits |= S_ISGID;
			break;
		case 't':
			bits |= S_ISVTX;
			break;
		case 'a':
		case 'l':
		case 'T':
		case '?':
			break;
		default:
			return -EINVAL;
		}
	}
	if (device)
		*type = chr ? S_IFCHR : S_IFBLK;
	*perm = bits;
	return 0;
}

mode_t dt_file_mode(const char *mode, const char *permissions, bool *is_dir)
{
	mode_t type = 0;
	unsigned perm = 0, special = 0, octal;
	bool have_perm = false;

	if (parse_go_mode(mode, &type, &perm, is_dir) == 0) {
		have_perm = true;
		special = perm & 07000;
	} else if (parse_octal(mode, &octal) == 0) {
		/* Some servers send the mode as octal; a full st_mode carries its type too. */
		perm = octal & 07777;
		have_perm = true;
		if ((octal & S_IFMT) == S_IFDIR)
			*is_dir = true;
		else if (octal & S_IFMT)
			type = octal & S_IFMT;
	}
	/* "permissions" is %04o of the permission bits: it wins for them. */
	if (parse_octal(permissions, &octal) == 0) {
		perm = (octal & 07777) | special;
		have_perm = true;
	}
	if (*is_dir)
		type = S_IFDIR;
	else if (!type || type == S_IFDIR)
		type = S_IFREG;
	if (!have_perm) /* nothing usable was sent: what a fresh file or directory has */
		perm = *is_dir ? 0755 : 0644;
	return type | (mode_t)perm;
}

/* ---- FileInfo ---- */

static char *dup_or_empty(const char *s, bool *nomem)
{
	char *copy = strdup(s ? s : "");

	if (!copy)
		*nomem = true;
	return copy;
}

void dt_file_info_clear(struct dt_file_info *fi)
{
	if (!fi)
		return;
	free(fi->name);
	free(fi->path);
	free(fi->owner);
	free(fi->group);
	memset(fi, 0, sizeof(*fi));
}

void dt_file_list_clear(struct dt_file_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++)
		dt_file_info_clear(&l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

static int64_t size_field(const cJSON *o)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(o, "size");
	double v;

	if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble <= 0)
		return 0;
	v = floor(item->valuedouble);
	return v >= 9.2e18 ? INT64_MAX : (int64_t)v;
}

int dt_file_info_from_json(const cJSON *o, bool nul_seen, struct dt_file_info *out)
{
	const char *name = dt_json_string(o, "name"), *path = dt_json_string(o, "path");
	const cJSON *is_dir = cJSON_GetObjectItemCaseSensitive(o, "isDir");
	bool nomem = false;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(o) || !name || !name[0])
		return -EINVAL;
	/* A name (or path) that hid a NUL would read as a shorter, different one. */
	if (nul_seen && (strstr(name, NUL_MARK) || (path && strstr(path, NUL_MARK))))
		return -EINVAL;
	out->name = dup_or_empty(name, &nomem);
	out->path = dup_or_empty(path, &nomem);
	out->owner = dup_or_empty(dt_json_string(o, "owner"), &nomem);
	out->group = dup_or_empty(dt_json_string(o, "group"), &nomem);
	if (nomem) {
		dt_file_info_clear(out);
		return -ENOMEM;
	}
	out->size = size_field(o);
	out->is_dir = cJSON_IsTrue(is_dir);
	out->mode =
	    dt_file_mode(dt_json_string(o, "mode"), dt_json_string(o, "permissions"), &out->is_dir);
	if (cJSON_IsBool(is_dir) && !out->is_dir && S_ISDIR(out->mode))
		out->mode = S_IFREG | (out->mode & 07777);
	if (dt_parse_rfc3339(dt_json_string(o, "modifiedAt"), &out->mtime) &&
	    dt_parse_go_time(dt_json_string(o, "modTime"), &out->mtime))
		out->mtime = (struct timespec){0, 0};
	return 0;
}

/*
 * Rewrites each "\u0000" escape (outside of an escaped backslash) into
 * "\uFFFF" in place, so cJSON keeps the whole string and the NUL stays
 * visible; returns whether there was one.
 */
static bool mark_nul_escapes(char *text, size_t len)
{
	bool seen = false;

	for (size_t i = 0; i + 5 < len; i++) {
		if (text[i] != '\\')
			continue;
		if (text[i + 1] == 'u' && memcmp(text + i + 2, "0000", 4) == 0) {
			memcpy(text + i + 2, "FFFF", 4);
			seen = true;
		}
		i++; /* the escaped character is never the start of an escape */
	}
	return seen;
}

/* Structural tokens outside strings: about the number of nodes cJSON would build. */
static size_t count_tokens(const char *text, size_t len)
{
	bool in_string = false;
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = text[i];

		if (in_string) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
			continue;
		}
		if (ch == '"')
			in_string = true;
		else if (ch == ',' || ch == ':' || ch == '{' || ch == '[')
			n++;
	}
	return n;
}

/* Parses a bounded, NUL-checked answer; *nul_seen tells whether a NUL was hidden in it. */
static int parse_hostile(char *text, size_t len, const char *what, cJSON **root, bool *nul_seen,
			 struct dt_error *err)
{
	*root = NULL;
	/* JSON never carries a raw NUL; cJSON would cut a string at it. */
	if (memchr(text, '\0', len))
		return dt_error_set(err, EIO, 0, what, "the answer contains a NUL byte");
	if (count_tokens(text, len) > MAX_LISTING_TOKENS)
		return dt_error_set(err, EIO, 0, what, "the answer is larger than %d entries",
				    DT_MAX_LISTING);
	*nul_seen = mark_nul_escapes(text, len);
	return dt_parse_json(text, len, what, root, err);
}

int dt_file_list_parse(char *text, size_t len, const char *what, struct dt_file_list *out,
		       struct dt_error *err)
{
	cJSON *root = NULL, *item;
	bool nul_seen = false;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = parse_hostile(text, len, what, &root, &nul_seen, err);
	if (rc)
		return rc;
	if (cJSON_IsNull(root)) { /* Go encodes an empty (nil) slice as null */
		cJSON_Delete(root);
		return 0;
	}
	if (!cJSON_IsArray(root)) {
		cJSON_Delete(root);
		return dt_error_set(err, EIO, 0, what, "the answer is not a list of files");
	}
	n = (size_t)cJSON_GetArraySize(root);
	if (n > DT_MAX_LISTING) {
		n = DT_MAX_LISTING;
		out->truncated = true;
	}
	out->items = n ? calloc(n, sizeof(*out->items)) : NULL;
	if (n && !out->items) {
		cJSON_Delete(root);
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	}
	cJSON_ArrayForEach(item, root)
	{
		if (out->count == n)
			break;
		rc = dt_file_info_from_json(item, nul_seen, &out->items[out->count]);
		if (rc == -ENOMEM) {
			cJSON_Delete(root);
			dt_file_list_clear(out);
			return dt_error_set(err, ENOMEM, 0, what, "out of memory");
		}
		if (rc)
			out->dropped++;
		else
			out->count++;
	}
	cJSON_Delete(root);
	return 0;
}

int dt_file_info_parse(char *text, size_t len, const char *what, struct dt_file_info *out,
		       struct dt_error *err)
{
	cJSON *root = NULL;
	bool nul_seen = false;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = parse_hostile(text, len, what, &root, &nul_seen, err);
	if (rc)
		return rc;
	rc = dt_file_info_from_json(root, nul_seen, out);
	cJSON_Delete(root);
	if (rc == -ENOMEM)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	if (rc)
		return dt_error_set(err, EIO, 0, what, "the server sent a malformed file record");
	return 0;
}
