/*
 * The toolbox process API (dt_process.h, daytona-api.md 7.1-7.3): execute,
 * code-run and sessions. Small JSON requests go through the toolbox's
 * request engine (dt_toolbox_run) with the API's headers and deadline; the
 * command logs stream through a data callback, asked in their plain-text
 * form, whose size is the output's.
 */
#include "dt_process.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt_internal.h"
#include "log.h"
#include "util.h"

/*
 * The logs endpoint answers JSON {output, stdout, stderr} to clients of SDK
 * 0.167 and later (the engine sends 0.218.0 on every request) and plain
 * combined text to older ones. This line comes before the engine's own:
 * Daytona and quaverd read the first one. Text is a third of the size and
 * streams without parsing.
 */
#define LOGS_AS_TEXT_HEADER "X-Daytona-SDK-Version: 0.26.0"

void dt_exec_result_clear(struct dt_exec_result *r)
{
	if (!r)
		return;
	free(r->result);
	memset(r, 0, sizeof(*r));
}

void dt_session_command_clear(struct dt_session_command *c)
{
	if (!c)
		return;
	free(c->id);
	free(c->command);
	memset(c, 0, sizeof(*c));
}

void dt_session_clear(struct dt_session *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->ncommands; i++)
		dt_session_command_clear(&s->commands[i]);
	free(s->commands);
	free(s->id);
	memset(s, 0, sizeof(*s));
}

void dt_session_list_clear(struct dt_session_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->count; i++)
		dt_session_clear(&l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

void dt_session_exec_result_clear(struct dt_session_exec_result *r)
{
	if (!r)
		return;
	free(r->cmd_id);
	free(r->output);
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* ---- requests ---- */

/* "/process/session/{sid}[/command/{cid}][/tail]" with each id percent-encoded. */
static int session_endpoint(struct buf *b, const char *sid, const char *cid, const char *tail,
			    const char *what, struct dt_error *err)
{
	int rc;

	if (!sid || !sid[0])
		return dt_error_set(err, EINVAL, 0, what, "no session id");
	if (cid && !cid[0])
		return dt_error_set(err, EINVAL, 0, what, "no command id");
	rc = buf_append_str(b, "/process/session");
	rc = rc ? rc : dt_path_segment(b, sid);
	if (!rc && cid) {
		rc = buf_append_str(b, "/command");
		rc = rc ? rc : dt_path_segment(b, cid);
	}
	if (!rc && tail)
		rc = buf_append_str(b, tail);
	if (rc == -ENOMEM)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	if (rc)
		return dt_error_set(err, EINVAL, 0, what, "invalid session or command id");
	return 0;
}

/*
 * One toolbox request; the answer (small) stays in @resp. 410 Gone (a
 * session or command that ended) is EPIPE: the shared mapper knows no 410.
 */
static int request(struct dt_toolbox *tb, enum dt_method method, const char *endpoint,
		   const char *body, const char *what, struct dt_response *resp,
		   struct dt_error *err)
{
	int rc = dt_toolbox_request(tb, method, endpoint, NULL, body, what, resp, err);

	if (rc && err->http_status == 410) {
		err->err = EPIPE;
		rc = -EPIPE;
	}
	/*
	 * A read (a listing, a session, a command's status) conflicts with
	 * nothing: its 409, whatever the sentence, is a sandbox going down,
	 * not something that exists (EEXIST would make opendir say so).
	 */
	if (rc == -EEXIST && method == DT_GET && err->http_status == 409) {
		err->err = EHOSTDOWN;
		rc = -EHOSTDOWN;
	}
	return rc;
}

/* A request whose answer is a JSON value (*out NULL for an empty answer). */
static int request_json(struct dt_toolbox *tb, enum dt_method method, const char *endpoint,
			const char *body, const char *what, cJSON **out, struct dt_error *err)
{
	struct dt_response resp;
	int rc;

	*out = NULL;
	rc = request(tb, method, endpoint, body, what, &resp, err);
	if (rc == 0 && resp.body.len)
		rc = dt_parse_json(resp.body.data, resp.body.len, what, out, err);
	dt_response_free(&resp);
	return rc;
}

static char *print_body(cJSON *o)
{
	char *text = o ? cJSON_PrintUnformatted(o) : NULL;

	cJSON_Delete(o);
	return text;
}

static bool add_envs(cJSON *o, const struct dt_kv *envs, size_t n)
{
	cJSON *e;

	if (!n)
		return true;
	e = dt_kv_to_json(envs, n);
	return e && cJSON_AddItemToObject(o, "envs", e);
}

/* A whole-number field within int range. */
static bool int_field(const cJSON *o, const char *name, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsNumber(v) || v->valuedouble < -2147483648.0 || v->valuedouble > 2147483647.0)
		return false;
	*out = (int)v->valuedouble;
	return true;
}

static int strdup_field(const cJSON *o, const char *name, bool required, char **out,
			const char *what, struct dt_error *err)
{
	const char *s = dt_json_string(o, name);

	*out = NULL;
	if (!s) {
		if (required)
			return dt_error_set(err, EIO, 0, what, "the answer has no %s", name);
		return 0;
	}
	*out = strdup(s);
	return *out ? 0 : dt_error_set(err, ENOMEM, 0, what, "out of memory");
}

/* {exitCode, result} */
static int exec_result(const cJSON *o, const char *what, struct dt_exec_result *out,
		       struct dt_error *err)
{
	if (!cJSON_IsObject(o) || !int_field(o, "exitCode", &out->exit_code))
		return dt_error_set(err, EIO, 0, what, "the answer has no exitCode");
	if (strdup_field(o, "result", false, &out->result, what, err))
		return -err->err;
	if (!out->result && !(out->result = strdup("")))
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	return 0;
}

int dt_process_execute(struct dt_toolbox *tb, const char *command, const char *cwd,
		       const struct dt_kv *envs, size_t nenvs, int timeout_s,
		       struct dt_exec_result *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *what = "execute";
	cJSON *o, *root = NULL;
	char *body;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!command || !command[0])
		return dt_error_set(err, EINVAL, 0, what, "no command");
	o = cJSON_CreateObject();
	if (o && (!cJSON_AddStringToObject(o, "command", command) ||
		  (cwd && cwd[0] && !cJSON_AddStringToObject(o, "cwd", cwd)) ||
		  !add_envs(o, envs, nenvs) ||
		  (timeout_s > 0 && !cJSON_AddNumberToObject(o, "timeout", timeout_s)))) {
		cJSON_Delete(o);
		o = NULL;
	}
	body = print_body(o);
	if (!body)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	rc = request_json(tb, DT_POST, "/process/execute", body, what, &root, err);
	if (rc == 0)
		rc = exec_result(root, what, out, err);
	if (rc)
		dt_exec_result_clear(out);
	cJSON_Delete(root);
	free(body);
	return rc;
}

int dt_process_code_run(struct dt_toolbox *tb, const char *code, const char *language,
			const char *const *argv, size_t nargv, const struct dt_kv *envs,
			size_t nenvs, int timeout_s, struct dt_exec_result *out,
			struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *what = "code-run";
	cJSON *o, *root = NULL, *args = NULL;
	bool ok;
	char *body;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!code)
		return dt_error_set(err, EINVAL, 0, what, "no code");
	o = cJSON_CreateObject();
	ok = o && cJSON_AddStringToObject(o, "code", code) &&
	     cJSON_AddStringToObject(o, "language", language && language[0] ? language : "python");
	if (ok && nargv) {
		args = cJSON_AddArrayToObject(o, "argv");
		ok = args != NULL;
		for (size_t i = 0; ok && i < nargv; i++) {
			cJSON *s = cJSON_CreateString(argv[i] ? argv[i] : "");

			ok = s && cJSON_AddItemToArray(args, s);
			if (!ok)
				cJSON_Delete(s);
		}
	}
	ok = ok && add_envs(o, envs, nenvs) &&
	     (timeout_s <= 0 || cJSON_AddNumberToObject(o, "timeout", timeout_s));
	if (!ok) {
		cJSON_Delete(o);
		o = NULL;
	}
	body = print_body(o);
	if (!body)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	rc = request_json(tb, DT_POST, "/process/code-run", body, what, &root, err);
	if (rc == 0)
		rc = exec_result(root, what, out, err);
	if (rc)
		dt_exec_result_clear(out);
	cJSON_Delete(root);
	free(body);
	return rc;
}

/* ---- sessions ---- */

static int command_from_json(const cJSON *o, const char *what, struct dt_session_command *out,
			     struct dt_error *err)
{
	const char *id = dt_json_string(o, "id");
	const char *command = dt_json_string(o, "command");

	memset(out, 0, sizeof(*out));
	if (!id || !id[0])
		return dt_error_set(err, EIO, 0, what, "a command without an id");
	out->id = strdup(id);
	out->command = strdup(command ? command : "");
	out->has_exit = int_field(o, "exitCode", &out->exit_code);
	if (!out->id || !out->command) {
		dt_session_command_clear(out);
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	}
	return 0;
}

static int session_from_json(const cJSON *o, const char *what, struct dt_session *out,
			     struct dt_error *err)
{
	const cJSON *cmds, *item, *walk;
	const char *id = cJSON_IsObject(o) ? dt_json_string(o, "sessionId") : NULL;
	int rc = 0, n;

	memset(out, 0, sizeof(*out));
	if (!id || !id[0])
		return dt_error_set(err, EIO, 0, what, "a session without a sessionId");
	out->id = strdup(id);
	if (!out->id)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	cmds = cJSON_GetObjectItemCaseSensitive(o, "commands");
	n = cJSON_IsArray(cmds) ? cJSON_GetArraySize(cmds) : 0;
	if (n > DT_MAX_ITEMS)
		rc = dt_error_set(err, EIO, 0, what, "a session with more than %d commands",
				  DT_MAX_ITEMS);
	if (!rc && n > 0 && !(out->commands = calloc((size_t)n, sizeof(*out->commands))))
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
	walk = rc || n <= 0 ? NULL : cmds;
	cJSON_ArrayForEach(item, walk)
	{
		if (!cJSON_IsObject(item) || !dt_json_string(item, "id"))
			continue; /* tolerated: a command we cannot name */
		rc = command_from_json(item, what, &out->commands[out->ncommands], err);
		if (rc)
			break;
		out->ncommands++;
	}
	if (rc)
		dt_session_clear(out);
	return rc;
}

int dt_session_create(struct dt_toolbox *tb, const char *session_id, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	char what[200];
	cJSON *o;
	char *body;
	int rc;

	snprintf(what, sizeof(what), "create session %s", session_id ? session_id : "");
	if (!session_id || !session_id[0])
		return dt_error_set(err, EINVAL, 0, what, "no session id");
	o = cJSON_CreateObject();
	if (o && !cJSON_AddStringToObject(o, "sessionId", session_id)) {
		cJSON_Delete(o);
		o = NULL;
	}
	body = print_body(o);
	if (!body)
		return dt_error_set(err, ENOMEM, 0, what, "out of memory");
	rc = request(tb, DT_POST, "/process/session", body, what, NULL, err);
	free(body);
	return rc;
}

int dt_session_list(struct dt_toolbox *tb, struct dt_session_list *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	const char *what = "list sessions";
	const cJSON *item, *walk;
	cJSON *root = NULL;
	int rc, n;

	memset(out, 0, sizeof(*out));
	rc = request_json(tb, DT_GET, "/process/session", NULL, what, &root, err);
	if (rc)
		return rc;
	if (root && !cJSON_IsArray(root) && !cJSON_IsNull(root))
		rc = dt_error_set(err, EIO, 0, what, "the answer is not a list");
	n = cJSON_IsArray(root) ? cJSON_GetArraySize(root) : 0;
	if (!rc && n > DT_MAX_ITEMS)
		rc = dt_error_set(err, EIO, 0, what, "more than %d sessions", DT_MAX_ITEMS);
	if (!rc && n > 0 && !(out->items = calloc((size_t)n, sizeof(*out->items))))
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
	walk = rc || n <= 0 ? NULL : root;
	cJSON_ArrayForEach(item, walk)
	{
		if (!cJSON_IsObject(item) || !dt_json_string(item, "sessionId"))
			continue;
		rc = session_from_json(item, what, &out->items[out->count], err);
		if (rc)
			break;
		out->count++;
	}
	cJSON_Delete(root);
	if (rc)
		dt_session_list_clear(out);
	return rc;
}

int dt_session_get(struct dt_toolbox *tb, const char *session_id, struct dt_session *out,
		   struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct buf ep = BUF_INIT;
	cJSON *root = NULL;
	char what[200];
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "get session %s", session_id ? session_id : "");
	rc = session_endpoint(&ep, session_id, NULL, NULL, what, err);
	if (!rc)
		rc = request_json(tb, DT_GET, ep.data, NULL, what, &root, err);
	if (!rc)
		rc = session_from_json(root, what, out, err);
	cJSON_Delete(root);
	buf_free(&ep);
	return rc;
}

int dt_session_delete(struct dt_toolbox *tb, const char *session_id, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct buf ep = BUF_INIT;
	char what[200];
	int rc;

	snprintf(what, sizeof(what), "delete session %s", session_id ? session_id : "");
	rc = session_endpoint(&ep, session_id, NULL, NULL, what, err);
	if (!rc)
		rc = request(tb, DT_DELETE, ep.data, NULL, what, NULL, err);
	buf_free(&ep);
	return rc;
}

int dt_session_exec(struct dt_toolbox *tb, const char *session_id, const char *command, bool async,
		    struct dt_session_exec_result *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct buf ep = BUF_INIT;
	cJSON *o, *root = NULL;
	char what[200], *body = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "run a command in session %s", session_id ? session_id : "");
	if (!command || !command[strspn(command, " \t\r\n")])
		return dt_error_set(err, EINVAL, 0, what, "no command");
	rc = session_endpoint(&ep, session_id, NULL, "/exec", what, err);
	if (rc)
		return rc;
	o = cJSON_CreateObject();
	if (o && (!cJSON_AddStringToObject(o, "command", command) ||
		  !cJSON_AddBoolToObject(o, "runAsync", async))) {
		cJSON_Delete(o);
		o = NULL;
	}
	body = print_body(o);
	if (!body) {
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
		goto out;
	}
	rc = request_json(tb, DT_POST, ep.data, body, what, &root, err);
	if (rc)
		goto out;
	if (!cJSON_IsObject(root)) {
		rc = dt_error_set(err, EIO, 0, what, "the answer is not an object");
		goto out;
	}
	rc = strdup_field(root, "cmdId", true, &out->cmd_id, what, err);
	if (!rc && !out->cmd_id[0])
		rc = dt_error_set(err, EIO, 0, what, "the answer has an empty cmdId");
	if (!rc && !async) {
		out->has_exit = int_field(root, "exitCode", &out->exit_code);
		rc = strdup_field(root, "output", false, &out->output, what, err);
		rc = rc ? rc : strdup_field(root, "stdout", false, &out->out, what, err);
		rc = rc ? rc : strdup_field(root, "stderr", false, &out->err, what, err);
	}
out:
	if (rc)
		dt_session_exec_result_clear(out);
	cJSON_Delete(root);
	free(body);
	buf_free(&ep);
	return rc;
}

int dt_session_command_get(struct dt_toolbox *tb, const char *session_id, const char *cmd_id,
			   struct dt_session_command *out, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct buf ep = BUF_INIT;
	cJSON *root = NULL;
	char what[300];
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(what, sizeof(what), "get command %s of session %s", cmd_id ? cmd_id : "",
		 session_id ? session_id : "");
	rc = session_endpoint(&ep, session_id, cmd_id ? cmd_id : "", NULL, what, err);
	if (!rc)
		rc = request_json(tb, DT_GET, ep.data, NULL, what, &root, err);
	if (!rc && !cJSON_IsObject(root))
		rc = dt_error_set(err, EIO, 0, what, "the answer is not an object");
	if (!rc)
		rc = command_from_json(root, what, out, err);
	cJSON_Delete(root);
	buf_free(&ep);
	return rc;
}

/* The logs' bytes past the skipped ones go to the caller. */
struct logs_sink {
	int64_t skip;
	int64_t seen;
	dt_logs_fn fn;
	void *arg;
	int fn_rc;
};

static size_t logs_data(struct dt_transfer *t, const char *data, size_t len)
{
	struct logs_sink *s = t->data_arg;
	int64_t start = s->seen;
	size_t whole = len;

	s->seen += (int64_t)len;
	if (s->seen <= s->skip)
		return len;
	if (start < s->skip) {
		data += s->skip - start;
		len -= (size_t)(s->skip - start);
	}
	s->fn_rc = s->fn(s->arg, data, len);
	if (s->fn_rc) {
		t->sink_errno = s->fn_rc < 0 ? -s->fn_rc : EIO;
		snprintf(t->sink_message, sizeof(t->sink_message), "stopped by the reader");
		return 0;
	}
	return whole;
}

/* Only a fresh attempt may start over: the sink has counted nothing yet. */
static bool logs_restart(struct dt_transfer *t)
{
	struct logs_sink *s = t->data_arg;

	return s->seen == 0;
}

int dt_session_command_logs(struct dt_toolbox *tb, const char *session_id, const char *cmd_id,
			    int64_t skip, dt_logs_fn fn, void *arg, int64_t *total,
			    struct dt_error *err)
{
	DT_ERR_GUARD(err);
	static const char *const headers[] = {LOGS_AS_TEXT_HEADER, "Accept: text/plain", NULL};
	struct logs_sink sink = {.skip = skip < 0 ? 0 : skip, .fn = fn, .arg = arg};
	struct dt_transfer t = {0};
	struct buf ep = BUF_INIT, url = BUF_INIT;
	char what[300];
	int rc;

	snprintf(what, sizeof(what), "logs of command %s of session %s", cmd_id ? cmd_id : "",
		 session_id ? session_id : "");
	if (!fn)
		return dt_error_set(err, EINVAL, 0, what, "no reader");
	rc = session_endpoint(&ep, session_id, cmd_id ? cmd_id : "", "/logs", what, err);
	if (!rc)
		rc = dt_toolbox_url(tb, &url, ep.data, NULL, what, err);
	if (!rc) {
		t.method = DT_GET;
		t.url = url.data;
		t.what = what;
		t.headers = headers;
		t.streaming = true;
		t.data_fn = logs_data;
		t.data_arg = &sink;
		t.restart_fn = logs_restart;
		rc = dt_toolbox_run(tb, &t, NULL, err);
		if (sink.fn_rc)
			rc = sink.fn_rc < 0 ? sink.fn_rc : -EIO;
	}
	if (total)
		*total = sink.seen;
	buf_free(&ep);
	buf_free(&url);
	return rc;
}

static int append_text(void *arg, const char *data, size_t len)
{
	struct buf *b = arg;

	if (b->len + len > DT_MAX_RESPONSE)
		return -EFBIG;
	return buf_append(b, data, len) ? -ENOMEM : 0;
}

int dt_session_command_logs_text(struct dt_toolbox *tb, const char *session_id, const char *cmd_id,
				 char **text, size_t *len, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct buf b = BUF_INIT;
	int rc;

	*text = NULL;
	*len = 0;
	rc = dt_session_command_logs(tb, session_id, cmd_id, 0, append_text, &b, NULL, err);
	if (rc == 0 && buf_append(&b, "", 0) == 0 && (b.data || (b.data = calloc(1, 1)))) {
		*len = b.len;
		*text = buf_steal(&b);
		return 0;
	}
	if (rc == 0)
		rc = dt_error_set(err, ENOMEM, 0, "logs", "out of memory");
	buf_free(&b);
	return rc;
}

int dt_session_input(struct dt_toolbox *tb, const char *session_id, const char *cmd_id,
		     const char *data, size_t len, struct dt_error *err)
{
	DT_ERR_GUARD(err);
	struct buf ep = BUF_INIT;
	char what[300], *body = NULL, *copy = NULL;
	cJSON *o;
	int rc;

	snprintf(what, sizeof(what), "input of command %s of session %s", cmd_id ? cmd_id : "",
		 session_id ? session_id : "");
	if (!data || memchr(data, '\0', len))
		return dt_error_set(err, EINVAL, 0, what, "input with a NUL byte");
	rc = session_endpoint(&ep, session_id, cmd_id ? cmd_id : "", "/input", what, err);
	if (rc)
		return rc;
	copy = malloc(len + 1);
	if (copy) {
		memcpy(copy, data, len);
		copy[len] = '\0';
	}
	o = copy ? cJSON_CreateObject() : NULL;
	if (o && !cJSON_AddStringToObject(o, "data", copy)) {
		cJSON_Delete(o);
		o = NULL;
	}
	body = print_body(o);
	if (!body)
		rc = dt_error_set(err, ENOMEM, 0, what, "out of memory");
	else
		rc = request(tb, DT_POST, ep.data, body, what, NULL, err);
	free(body);
	free(copy);
	buf_free(&ep);
	return rc;
}

/* ---- stream markers ---- */

static void emit(const struct dt_log_demux *d, const char *data, size_t len, dt_demux_fn fn,
		 void *arg)
{
	if (len)
		fn(arg, d->stream == 2 ? 2 : 1, data, len);
}

void dt_log_demux_feed(struct dt_log_demux *d, const char *data, size_t len, dt_demux_fn fn,
		       void *arg)
{
	size_t i = 0, start;

	/* First the marker a previous chunk may have begun. */
	while (d->nheld && i < len) {
		if (data[i] != d->held[0]) {
			char held[2];
			size_t n = d->nheld;

			memcpy(held, d->held, n);
			d->nheld = 0;
			emit(d, held, n, fn, arg);
			break;
		}
		i++;
		if (d->nheld >= sizeof(d->held)) {
			/* three alike: a whole marker */
			d->stream = d->held[0];
			d->nheld = 0;
		} else {
			d->held[d->nheld++] = data[i - 1];
		}
	}
	start = i;
	while (i < len) {
		char c = data[i];

		if (c != 1 && c != 2) {
			i++;
			continue;
		}
		if (i + 2 < len) {
			if (data[i + 1] == c && data[i + 2] == c) {
				emit(d, data + start, i - start, fn, arg);
				d->stream = c;
				i += 3;
				start = i;
			} else {
				i++;
			}
			continue;
		}
		/* One or two bytes left: a marker cut by the chunk's end, maybe. */
		if (data[len - 1] == c) {
			emit(d, data + start, i - start, fn, arg);
			d->nheld = len - i;
			memcpy(d->held, data + i, d->nheld);
			return;
		}
		i++;
	}
	emit(d, data + start, len - start, fn, arg);
}

void dt_log_demux_end(struct dt_log_demux *d, dt_demux_fn fn, void *arg)
{
	char held[2];
	size_t n = d->nheld;

	memcpy(held, d->held, n);
	d->nheld = 0;
	emit(d, held, n, fn, arg);
}
